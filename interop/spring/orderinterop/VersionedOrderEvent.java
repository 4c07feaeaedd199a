package orderinterop;

import java.time.OffsetDateTime;
import java.util.UUID;

/** order-system's richer event: the tutorial's fields plus an event id, a version and a zoned timestamp. */
public record VersionedOrderEvent(UUID eventId, String orderId, String customerId, OrderStatus status,
                                  String description, OffsetDateTime timestamp, int version) {
}
