"""Kafka subscribers of the notifications service: validate, call the domain, persist, publish."""

from __future__ import annotations

from faststream.kafka import KafkaRouter

from .repository import Repository
from .settings import NotificationsSettings


def build_router(settings: NotificationsSettings, repo: Repository) -> KafkaRouter:
    router = KafkaRouter()
    return router
