"""The Kafka client pieces: small cores (``producer``, ``consumer``, ``transactions``) and the
hardening composed around them. Importing any of them installs the log throttle (``throttle``)."""

from . import throttle as throttle  # noqa: F401  (its filter on the "order_system.kafka" logger)
