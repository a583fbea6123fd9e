"""Shared foundation: contracts, settings, topics, the embedded broker, Kafka clients."""
