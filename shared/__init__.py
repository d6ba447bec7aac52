"""Code every service shares: the event contract, settings, logging, clock, Kafka and MongoDB plumbing."""
