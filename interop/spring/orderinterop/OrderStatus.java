package orderinterop;

/** The five statuses of an order, as the Spring tutorial names them. */
public enum OrderStatus {
    CREATED, PAID, SHIPPED, DELIVERED, CANCELLED
}
