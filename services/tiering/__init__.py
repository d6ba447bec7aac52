"""Tiering service: keeps per-customer metrics and classifies every customer under a versioned policy."""
