"""Helpers of the tiering integration tests."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.tiering.handlers import SUBSCRIBED
from services.tiering.settings import TieringSettings
from shared.contract.topics import CRM_TIER_CHANGES
from shared.kafka import ensure_topics
from tests import helpers
from tests.helpers import api_key, envelope, known_partitions, produce

#: Events happen in the recent past, so the service's clock may move forward up to today.
BASE = (datetime.now(UTC) - timedelta(days=80)).replace(microsecond=0)
READ_KEY, READ = api_key("reader", "tiers:read")
WRITE_KEY, WRITE = api_key("care-lead", "tiers:read", "tiers:write")
POLICY_KEY, POLICY = api_key("policy-owner", "tiers:read", "policy:write")


async def settings_for(unique: str, **kw: Any) -> TieringSettings:
    settings = TieringSettings(**{
        "mongodb_database": f"test_tiering_{unique}", "kafka_group_id": f"test-tiering-{unique}",
        "scheduler_interval_s": 0.2, "refresh_interval_s": 0, "batch_timeout_ms": 20,
        "api_keys": (READ, WRITE, POLICY), **kw})
    await skip_backlog(settings)
    return settings


async def skip_backlog(settings: TieringSettings) -> None:
    # On a fresh broker nothing has created the topics yet (the service does so only when it starts).
    await ensure_topics(settings)
    await helpers.skip_backlog(settings, SUBSCRIBED)


def purchase(customer: str, order_id: str, amount: str, at: datetime, currency: str = "CNY") -> dict[str, Any]:
    return envelope("order.purchase.completed", customer, {"order_id": order_id, "total_amount": amount,
                                                           "currency": currency, "channel": "online"}, time_=at)


def refund(customer: str, refund_id: str, amount: str, at: datetime, order_id: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"refund_id": refund_id, "amount": amount, "currency": "CNY"}
    if order_id:
        data["order_id"] = order_id
    return envelope("order.purchase.refunded", customer, data, time_=at)


def profile(customer: str, at: datetime, status: str = "prospect") -> dict[str, Any]:
    return envelope("customer.profile.changed", customer, {"status": status, "locale": "zh-CN"}, time_=at)


async def send(infra: dict[str, str], topic: str, *events: dict[str, Any]) -> None:
    await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], topic, [(e["subject"].encode(), e) for e in events])


class Watch:
    """Reads a topic from where it ended when the watch was made (the shared topics are long)."""

    def __init__(self, bootstrap: str, topic: str = CRM_TIER_CHANGES) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.start: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> Watch:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(self.topic, p) for p in await known_partitions(consumer, self.topic)]
            self.start = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def records(self, key: str, at_least: int, timeout: float = 30.0) -> list[Any]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        found: list[Any] = []
        try:
            consumer.assign(list(self.start))
            for tp, offset in self.start.items():
                consumer.seek(tp, offset)
            deadline = asyncio.get_running_loop().time() + timeout
            while len(found) < at_least and asyncio.get_running_loop().time() < deadline:
                for recs in (await consumer.getmany(timeout_ms=300)).values():
                    found.extend(r for r in recs if r.key == key.encode())
        finally:
            await consumer.stop()
        return found

    async def events(self, key: str, at_least: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in await self.records(key, at_least, timeout) if r.value is not None]
