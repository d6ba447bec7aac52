"""Kafka subscribers of the complaints service: validate, call the domain, persist, publish."""

from __future__ import annotations

from faststream.kafka import KafkaRouter

from .repository import Repository
from .settings import ComplaintsSettings


def build_router(settings: ComplaintsSettings, repo: Repository) -> KafkaRouter:
    router = KafkaRouter()
    return router
