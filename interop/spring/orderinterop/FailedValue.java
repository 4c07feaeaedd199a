package orderinterop;

import java.util.function.Function;

import org.springframework.kafka.support.serializer.FailedDeserializationInfo;

/** What Spring's ErrorHandlingDeserializer hands the listener when the JSON deserializer fails. */
public class FailedValue implements Function<FailedDeserializationInfo, Object> {

    /** The failure, kept as the record's value so that the listener reports it. */
    public record Failure(String message) {
    }

    @Override
    public Object apply(FailedDeserializationInfo info) {
        Throwable cause = info.getException();
        while (cause.getCause() != null) {
            cause = cause.getCause();
        }
        return new Failure(info.getException().getMessage() + " / " + cause);
    }
}
