"""Kafka subscribers of the customer service: validate, call the domain, persist, publish."""

from __future__ import annotations

from faststream.kafka import KafkaRouter

from .repository import Repository
from .settings import CustomerSettings


def build_router(settings: CustomerSettings, repo: Repository) -> KafkaRouter:
    router = KafkaRouter()
    return router
