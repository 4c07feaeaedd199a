package orderinterop;

import java.time.LocalDateTime;

/**
 * The Spring tutorial's event: no event id, no version, and a zone-less {@code LocalDateTime}.
 * Spring's JSON serializer names this class in the {@code __TypeId__} header.
 */
public record OrderEvent(String orderId, String customerId, OrderStatus status, String description,
                         LocalDateTime timestamp) {
}
