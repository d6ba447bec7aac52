"""Notifications service: care and holiday messages within consent, quiet hours and frequency caps."""
