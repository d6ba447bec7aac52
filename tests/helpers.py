"""Helpers shared by integration and end-to-end tests: make contract events, produce, wait."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.auth import new_key
from shared.settings import ApiKey, ServiceSettings


def envelope(event_type: str, subject: str, data: dict[str, Any], *, time_: datetime | str | None = None,
             event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    when = time_ or datetime.now(UTC)
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": "tests",
        "type": event_type,
        "subject": subject,
        "time": when if isinstance(when, str) else when.isoformat(),
        "datacontenttype": "application/json",
        "dataschemaversion": 1,
        "data": data,
        **extra,
    }


def purchase(subject: str, order_id: str, amount: str = "100.00", currency: str = "CNY", **kw: Any) -> dict[str, Any]:
    return envelope("order.purchase.completed", subject,
                    {"order_id": order_id, "total_amount": amount, "currency": currency, "channel": "online"}, **kw)


async def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | dict[str, Any] | None]],
                  headers: list[tuple[str, bytes]] | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value in messages:
            raw = json.dumps(value).encode() if isinstance(value, dict) else value
            await producer.send_and_wait(topic, raw, key=key, headers=headers)
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topic: str, *, until: Callable[[list[Any]], bool],
                      timeout: float = 30.0) -> list[Any]:
    """Read ``topic`` from the start until ``until(records)`` holds or the timeout passes."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(records):
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()
    return records


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


@contextlib.asynccontextmanager
async def running(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run a service app in this process (lifespan included) and give an HTTP client for it."""
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:
            yield client


def api_key(name: str, *scopes: str) -> tuple[str, ApiKey]:
    """A fresh plaintext key and the settings entry that grants it ``scopes``."""
    key = new_key()
    return key, ApiKey.from_plaintext(name, key, set(scopes))


async def known_partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float = 30.0) -> set[int]:
    """The partitions of ``topic`` once the broker's metadata lists them: a topic created a moment
    ago, or a broker just restarted, may not be in it yet, and an empty answer would read as an
    empty topic."""
    deadline = time.monotonic() + timeout
    while True:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
        found = consumer._client.cluster.partitions_for_topic(topic)  # noqa: SLF001
        if found:
            return set(found)
        if time.monotonic() > deadline:
            raise AssertionError(f"the broker's metadata lists no partitions of {topic} after {timeout:.0f}s")
        await asyncio.sleep(0.5)


async def skip_backlog(settings: ServiceSettings, topics: Iterable[str]) -> None:
    """Commit a test service's fresh groups at the end of the shared topics, so that it reads only
    what the test produces instead of every earlier test's history."""
    for topic in topics:
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                    group_id=settings.group_for(topic), enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in await known_partitions(consumer, topic)]
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            await consumer.commit(dict(ends))
        finally:
            await consumer.stop()
