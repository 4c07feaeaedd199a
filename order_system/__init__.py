"""order_system: an event-driven order system on Apache Kafka."""
