package orderinterop;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.springframework.kafka.core.DefaultKafkaConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaProducerFactory;
import org.springframework.kafka.core.KafkaTemplate;
import org.springframework.kafka.listener.ConcurrentMessageListenerContainer;
import org.springframework.kafka.listener.ContainerProperties;
import org.springframework.kafka.listener.MessageListener;
import org.springframework.kafka.support.SendResult;
import org.springframework.kafka.support.serializer.ErrorHandlingDeserializer;
import org.springframework.kafka.support.serializer.JacksonJsonDeserializer;
import org.springframework.kafka.support.serializer.JacksonJsonSerializer;

import tools.jackson.databind.json.JsonMapper;

/**
 * A Spring Kafka client for order-system's interop tests and notebook. Every mode prints one JSON
 * object per line on stdout; warnings go to stderr.
 *
 * <pre>
 * produce BOOTSTRAP TOPIC CANCEL_EVERY [STEPS]
 *                                       order ids on stdin: the tutorial's lifecycle of each (its first
 *                                       STEPS events), interleaved across orders, via KafkaTemplate
 * listen BOOTSTRAP TOPIC GROUP COUNT TIMEOUT_MS [versioned|tutorial]
 *                                       read COUNT records with a listener container and Spring's JSON deserializer
 * </pre>
 */
public final class SpringInterop {

    private static final JsonMapper JSON = JsonMapper.builder().build();
    private static final List<OrderStatus> HAPPY =
            List.of(OrderStatus.CREATED, OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED);

    private SpringInterop() {
    }

    public static void main(String[] args) throws Exception {
        String mode = args.length > 0 ? args[0] : "";
        switch (mode) {
            case "produce" -> produce(args[1], args[2], Integer.parseInt(args[3]),
                    args.length > 4 ? Integer.parseInt(args[4]) : HAPPY.size());
            case "listen" -> listen(args[1], args[2], args[3], Integer.parseInt(args[4]), Long.parseLong(args[5]),
                    args.length > 6 ? args[6] : "versioned");
            default -> {
                System.err.println("usage: produce BOOTSTRAP TOPIC CANCEL_EVERY [STEPS] | "
                        + "listen BOOTSTRAP TOPIC GROUP COUNT TIMEOUT_MS [versioned|tutorial]");
                System.exit(2);
            }
        }
        System.exit(0);
    }

    private static List<String> stdinLines() throws Exception {
        List<String> lines = new ArrayList<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            if (!line.isEmpty()) {
                lines.add(line);
            }
        }
        return lines;
    }

    private static void print(Map<String, Object> row) {
        System.out.println(JSON.writeValueAsString(row));
    }

    private static List<OrderStatus> lifecycle(int n, int cancelEvery) {
        if (cancelEvery <= 0 || n % cancelEvery != cancelEvery - 1) {
            return HAPPY;
        }
        return (n / cancelEvery) % 2 == 0
                ? List.of(OrderStatus.CREATED, OrderStatus.CANCELLED)
                : List.of(OrderStatus.CREATED, OrderStatus.PAID, OrderStatus.CANCELLED);
    }

    private static String describe(OrderStatus status) {
        return switch (status) {
            case CREATED -> "Order created";
            case PAID -> "Payment completed";
            case SHIPPED -> "Shipping started";
            case DELIVERED -> "Delivery completed";
            case CANCELLED -> "Order cancelled";
        };
    }

    /** Each order's lifecycle, interleaved step by step across orders, keyed by order id. */
    private static void produce(String bootstrap, String topic, int cancelEvery, int steps) throws Exception {
        Map<String, Object> props = new HashMap<>();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, JacksonJsonSerializer.class);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        DefaultKafkaProducerFactory<String, OrderEvent> factory = new DefaultKafkaProducerFactory<>(props);
        KafkaTemplate<String, OrderEvent> template = new KafkaTemplate<>(factory);
        List<String> orderIds = stdinLines();
        List<OrderEvent> events = new ArrayList<>();
        List<CompletableFuture<SendResult<String, OrderEvent>>> sent = new ArrayList<>();
        for (int step = 0; step < Math.min(steps, HAPPY.size()); step++) {
            for (int n = 0; n < orderIds.size(); n++) {
                List<OrderStatus> life = lifecycle(n, cancelEvery);
                if (step >= life.size()) {
                    continue;
                }
                OrderStatus status = life.get(step);
                OrderEvent event = new OrderEvent(orderIds.get(n), "customer-" + (n % 10), status,
                        describe(status), LocalDateTime.now(ZoneOffset.UTC));
                events.add(event);
                sent.add(template.send(topic, event.orderId(), event));
            }
        }
        template.flush();
        for (int i = 0; i < sent.size(); i++) {
            RecordMetadata metadata = sent.get(i).get(60, TimeUnit.SECONDS).getRecordMetadata();
            OrderEvent event = events.get(i);
            Map<String, Object> row = new LinkedHashMap<>();
            row.put("orderId", event.orderId());
            row.put("customerId", event.customerId());
            row.put("status", event.status().name());
            row.put("description", event.description());
            row.put("timestamp", event.timestamp().toString());
            row.put("partition", metadata.partition());
            row.put("offset", metadata.offset());
            print(row);
        }
        factory.destroy();
    }

    /** A listener container with Spring's JSON deserializer and a default type (our records carry no type header). */
    private static void listen(String bootstrap, String topic, String group, int count, long timeoutMs, String type)
            throws Exception {
        Class<?> target = "tutorial".equals(type) ? OrderEvent.class : VersionedOrderEvent.class;
        Map<String, Object> props = new HashMap<>();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ErrorHandlingDeserializer.class);
        props.put(ErrorHandlingDeserializer.VALUE_DESERIALIZER_CLASS, JacksonJsonDeserializer.class);
        props.put(ErrorHandlingDeserializer.VALUE_FUNCTION, FailedValue.class);
        props.put(JacksonJsonDeserializer.VALUE_DEFAULT_TYPE, target.getName());
        DefaultKafkaConsumerFactory<String, Object> factory = new DefaultKafkaConsumerFactory<>(props);
        ContainerProperties containerProps = new ContainerProperties(topic);
        List<Map<String, Object>> rows = Collections.synchronizedList(new ArrayList<>());
        CountDownLatch latch = new CountDownLatch(count);
        containerProps.setMessageListener((MessageListener<String, Object>) record -> {
            rows.add(row(record));
            latch.countDown();
        });
        ConcurrentMessageListenerContainer<String, Object> container =
                new ConcurrentMessageListenerContainer<>(factory, containerProps);
        container.setConcurrency(3);
        container.start();
        boolean complete = latch.await(timeoutMs, TimeUnit.MILLISECONDS);
        container.stop();
        List<Map<String, Object>> sorted = new ArrayList<>(rows);
        sorted.sort(Comparator.comparing((Map<String, Object> r) -> (Integer) r.get("partition"))
                .thenComparing(r -> (Long) r.get("offset")));
        sorted.forEach(SpringInterop::print);
        if (!complete) {
            System.err.println("received " + sorted.size() + " of " + count + " records within " + timeoutMs + " ms");
            System.exit(3);
        }
    }

    private static Map<String, Object> row(ConsumerRecord<String, Object> record) {
        Map<String, Object> row = new LinkedHashMap<>();
        row.put("partition", record.partition());
        row.put("offset", record.offset());
        row.put("key", record.key());
        Header typeId = record.headers().lastHeader("__TypeId__");
        row.put("typeId", typeId == null ? null : new String(typeId.value(), StandardCharsets.UTF_8));
        Object value = record.value();
        row.put("type", value == null ? null : value.getClass().getSimpleName());
        Map<String, Object> event = new LinkedHashMap<>();
        if (value instanceof VersionedOrderEvent e) {
            event.put("eventId", e.eventId() == null ? null : e.eventId().toString());
            putCommon(event, e.orderId(), e.customerId(), e.status(), e.description());
            event.put("timestamp", e.timestamp() == null ? null : e.timestamp().toInstant().toString());
            event.put("version", e.version());
        } else if (value instanceof OrderEvent e) {
            putCommon(event, e.orderId(), e.customerId(), e.status(), e.description());
            event.put("timestamp", e.timestamp() == null ? null : e.timestamp().toString());
        } else if (value instanceof FailedValue.Failure f) {
            row.put("error", f.message());
        }
        row.put("event", event);
        return row;
    }

    private static void putCommon(Map<String, Object> event, String orderId, String customerId, OrderStatus status,
                                  String description) {
        event.put("orderId", orderId);
        event.put("customerId", customerId);
        event.put("status", status == null ? null : status.name());
        event.put("description", description);
    }
}
