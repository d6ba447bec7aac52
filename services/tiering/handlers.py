"""Kafka subscribers of the tiering service: validate, call the domain, persist, publish."""

from __future__ import annotations

from faststream.kafka import KafkaRouter

from .repository import Repository
from .settings import TieringSettings


def build_router(settings: TieringSettings, repo: Repository) -> KafkaRouter:
    router = KafkaRouter()
    return router
