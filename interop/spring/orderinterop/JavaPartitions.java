package orderinterop;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.StringJoiner;

import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;

/**
 * Kafka's own partition for each key read from stdin (one per line, UTF-8), for each partition
 * count given as an argument: one line of space-separated partitions per key. Needs only
 * kafka-clients, so it runs on the broker's own jars.
 */
public final class JavaPartitions {

    private JavaPartitions() {
    }

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String key = in.readLine(); key != null; key = in.readLine()) {
            byte[] bytes = key.getBytes(StandardCharsets.UTF_8);
            StringJoiner line = new StringJoiner(" ");
            for (String count : args) {
                line.add(Integer.toString(BuiltInPartitioner.partitionForKey(bytes, Integer.parseInt(count))));
            }
            System.out.println(line);
        }
    }
}
