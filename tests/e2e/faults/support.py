"""What the fault tests share: the dedicated servers, events to replay, waiting for a consumer group
to catch up, and reading what the services hold and published."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import random
import re
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from deploy.local.infra import FerretDB, Kafka
from services.tiering import domain
from services.tiering.classification import classify
from services.tiering.metrics import Entry, compute_metrics
from services.tiering.policy import default_policy
from shared.contract.topics import (
    CRM_COMPLAINTS,
    CRM_CUSTOMER_INTAKE,
    CRM_CUSTOMER_TIERS,
    CRM_INTERACTIONS,
    CRM_NOTIFICATIONS,
    ORDERS_PURCHASES,
)
from shared.kafka import ensure_topics
from shared.settings import ServiceSettings
from tests.helpers import api_key, envelope, known_partitions
from tests.processes import ServiceProcess

READ_KEY, READ = api_key("fault-tests", "tiers:read", "customers:read", "complaints:read", "notifications:read")
HEADERS = {"X-API-Key": READ_KEY}
#: What the customer service reads, so that a test's fresh groups can skip the topics' backlog.
CUSTOMER_TOPICS = (CRM_CUSTOMER_INTAKE, ORDERS_PURCHASES, CRM_INTERACTIONS, CRM_CUSTOMER_TIERS, CRM_COMPLAINTS,
                   CRM_NOTIFICATIONS)


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class FaultInfra:
    kafka: Kafka
    ferretdb: FerretDB
    log_root: Path

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def mongodb_url(self) -> str:
        return self.ferretdb.url

    def service_env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "MONGODB_URL": self.mongodb_url,
                "API_KEYS": json.dumps([READ.model_dump(mode="json")]), "LOG_LEVEL": "INFO"}

    def kafka_running(self) -> bool:
        return _alive(self.kafka.pid_file)

    def ferretdb_running(self) -> bool:
        return _alive(self.ferretdb.pid_file)


def create_topics(servers: FaultInfra) -> None:
    """The catalogue's topics as the services create them, so that a test may produce before any
    service has started (a synchronous fixture: run in a thread of its own)."""
    settings = ServiceSettings(kafka_bootstrap_servers=servers.bootstrap)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, ensure_topics(settings)).result()


async def in_thread(call: Callable[..., Any], *args: Any) -> Any:
    """A blocking step (a process start or a server restart) without stopping this event loop."""
    return await asyncio.to_thread(call, *args)


# --- purchases ----------------------------------------------------------------------------------

@dataclass
class Replay:
    """Purchases of many customers, each customer's in time order, all in the last week: every class
    then only ever moves up, so the final classification does not depend on batch boundaries and a
    clean run is the rules applied once to each customer's whole ledger."""

    events: list[dict[str, Any]]
    ledgers: dict[str, list[Entry]] = field(default_factory=dict)

    @property
    def customers(self) -> list[str]:
        return sorted(self.ledgers)

    def spend_minor(self, customer: str) -> int:
        return sum(e.minor for e in self.ledgers[customer])

    def orders(self, customer: str) -> int:
        return len(self.ledgers[customer])

    def only(self, customers: Iterable[str]) -> Replay:
        return Replay(events=[], ledgers={c: self.ledgers[c] for c in customers})


def replay(prefix: str, *, customers: int, purchases: int, seed: int = 7, spread: int | None = 100) -> Replay:
    """``purchases`` over ``customers``; each customer buys within a stretch of the replay (about
    ``2 * spread`` customers wide), as real customers come and go, so that a restart in the middle
    reloads the few customers active across it rather than every one (FerretDB v1 reads a
    document by ``_id`` with a scan of the collection). ``spread=None``: anyone buys any time."""
    rng = random.Random(seed)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=7)
    step = timedelta(days=6) / purchases
    ids = [f"{prefix}-{n:05d}" for n in range(customers)]
    result = Replay(events=[], ledgers={cid: [] for cid in ids})
    for n in range(purchases):
        if spread is None:
            customer = rng.choice(ids)
        else:
            around = spread + n * (customers - 2 * spread) // purchases
            customer = ids[around + rng.randint(-spread, spread)]
        at = start + step * n
        amount = Decimal(rng.randrange(1_000, 300_000)).scaleb(-2)
        order_id = f"{prefix}-O{n:06d}"
        # A trace per purchase: the tier changes it causes carry it, which names their cause.
        trace = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
        result.events.append(envelope("order.purchase.completed", customer,
                                      {"order_id": order_id, "total_amount": str(amount), "currency": "CNY",
                                       "channel": "online"}, time_=at, traceparent=trace))
        result.ledgers[customer].append(Entry(f"p:{order_id}", "purchase", at, int(amount * 100),
                                              order_id=order_id))
    for customer in [c for c, ledger in result.ledgers.items() if not ledger]:
        del result.ledgers[customer]
    return result


def clean_classification(ledger: Iterable[Entry], now: datetime | None = None) -> dict[str, str]:
    """What a clean run ends with for one customer: the default policy's rules over the whole
    ledger at once (no cut-offs: the population refresh is off in these tests)."""
    policy = default_policy()
    now = now or datetime.now(UTC)
    entries = list(ledger)
    metrics = compute_metrics(entries, now, policy)
    targets = classify(metrics, None, policy, now)
    snapshot, _ = domain.decide(domain.Snapshot(), targets, metrics, None, policy, now, now)
    return snapshot.output


async def produce_events(bootstrap: str, topic: str, events: Sequence[dict[str, Any]]) -> None:
    """Everything at once, keyed by customer: the producer batches, and one wait covers all."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20,
                                max_batch_size=512 * 1024, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        pending = [await producer.send(topic, json.dumps(e).encode(), key=e["subject"].encode()) for e in events]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


# --- consumer groups ------------------------------------------------------------------------------

async def group_lag(bootstrap: str, group: str, topic: str = ORDERS_PURCHASES) -> int:
    """Records of ``topic`` that ``group`` has not committed yet (all of them before its first commit)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(await known_partitions(consumer, topic))]
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        return sum(ends[tp] - max(0, committed[tp].offset if tp in committed else 0) for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()


async def caught_up(bootstrap: str, group: str, topic: str = ORDERS_PURCHASES, *, timeout: float,
                    alive: Sequence[ServiceProcess] = ()) -> float:
    """Wait until ``group`` committed everything of ``topic``; the seconds it took. Fails early
    when one of ``alive`` exits."""
    started = time.monotonic()
    lag = -1
    while time.monotonic() - started < timeout:
        for process in alive:
            if process.process is not None and process.process.poll() is not None:
                raise AssertionError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            lag = await group_lag(bootstrap, group, topic)
        except Exception as exc:  # the broker may be on its way back up
            lag = -1
            last_error = exc
        if lag == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    detail = f"lag {lag}" if lag >= 0 else f"broker error {last_error!r}"
    raise AssertionError(f"group {group} did not catch up on {topic} within {timeout:.0f}s ({detail})")


# --- what the services expose ----------------------------------------------------------------------

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


async def counter(base_url: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus sample over the series whose labels include ``labels``."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        text = (await client.get(f"{base_url}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or match["name"] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match["value"])
    return total


async def wait_for(check: Callable[[], Awaitable[Any]], *, timeout: float, interval: float = 0.3,
                   what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout:.0f}s; last: {last!r}")


async def get_json(base_url: str, paths: Sequence[str], *, concurrency: int = 16) -> dict[str, Any]:
    """GET every path; the JSON body per path, None for a 404."""
    slots = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=HEADERS, timeout=30.0) as client:
        async def one(path: str) -> tuple[str, Any]:
            async with slots:
                response = await client.get(path)
            if response.status_code == 404:
                return path, None
            response.raise_for_status()
            return path, response.json()

        return dict(await asyncio.gather(*(one(p) for p in paths)))


async def classifications(base_url: str, customers: Sequence[str]) -> dict[str, Any]:
    """Through the API, one customer per request (each a scan of the collection in FerretDB v1:
    keep the number small)."""
    found = await get_json(base_url, [f"/customers/{c}/classification" for c in customers])
    return {c: found[f"/customers/{c}/classification"] for c in customers}


async def stored_classifications(mongodb_url: str, database: str) -> dict[str, Any]:
    """Every customer's current classification as the tiering service stores it (its highest
    revision, the rule the service itself reads by), in the shape of the API's answer."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    latest: dict[str, Any] = {}
    try:
        async for doc in client[database]["customers"].find({}, {"ledger": 0}):
            current = latest.get(doc["customer_id"])
            if current is None or doc["rev"] > current["rev"]:
                latest[doc["customer_id"]] = doc
    finally:
        await client.close()
    return {cid: {**(doc.get("output") or {}), "metrics": doc.get("metrics") or {},
                  "downgrade_pending": doc.get("pending") or {}, "rev": doc["rev"]} for cid, doc in latest.items()}


DIMENSIONS = ("value_tier", "abc_class", "vip", "loyalty", "lifecycle", "rfm_segment", "potential")


def differences(plan: Replay, held: dict[str, Any]) -> list[str]:
    """Where the service's classifications differ from a clean run of ``plan`` (empty when none)."""
    problems = []
    for customer in plan.customers:
        doc = held.get(customer)
        if doc is None:
            problems.append(f"{customer}: not classified")
            continue
        metrics = doc["metrics"]
        want_spend, want_orders = plan.spend_minor(customer), plan.orders(customer)
        if (metrics["spend_12m"], metrics["orders_12m"], metrics["lifetime_orders"]) != (
                want_spend, want_orders, want_orders):
            problems.append(f"{customer}: spend {metrics['spend_12m']} in {metrics['orders_12m']} orders "
                            f"({metrics['lifetime_orders']} lifetime), expected {want_spend} in {want_orders}")
        expected = clean_classification(plan.ledgers[customer])
        got = {d: doc.get(d) for d in DIMENSIONS if doc.get(d) is not None}
        if got != expected:
            problems.append(f"{customer}: classes {got}, a clean run gives {expected}")
        if doc.get("downgrade_pending"):
            problems.append(f"{customer}: downgrade pending {doc['downgrade_pending']}")
    return problems


async def read_topic(bootstrap: str, topic: str, keep: Callable[[Any], bool]) -> list[Any]:
    """Every record of ``topic`` up to its current end that ``keep`` accepts."""
    # "earliest": a position reset still pending from the assignment must not land at the end,
    # which the quiet rule below would take for a partition read to its end.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    found: list[Any] = []
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(await known_partitions(consumer, topic))]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        after = dict.fromkeys(partitions, 0)
        deadline = time.monotonic() + 120
        last_record = time.monotonic()
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                found.extend(r for r in records if r.offset < ends[tp] and keep(r))
                if records:
                    after[tp] = records[-1].offset + 1
                    last_record = time.monotonic()
            remaining = {tp for tp in remaining if after[tp] < ends[tp]}
            # A log may end in offsets that hold no record, which are never returned: after a long
            # quiet, a partition whose position is at its end is done.
            if remaining and time.monotonic() - last_record > 15:
                remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        assert not remaining, f"could not read {topic} to its end: {sorted(tp.partition for tp in remaining)}"
    finally:
        await consumer.stop()
    return found


def by_key(records: Iterable[Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record.value is not None:
            out[record.key.decode()].append(json.loads(record.value))
    return out


async def skip_backlog(bootstrap: str, group: str, topics: Iterable[str]) -> None:
    """Commit a new service group at the end of the topics it reads, so that it sees only what its
    test produces and not what earlier tests left on the shared topics."""
    settings = ServiceSettings(kafka_bootstrap_servers=bootstrap, kafka_group_id=group)
    for topic in topics:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=settings.group_for(topic),
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in sorted(await known_partitions(consumer, topic))]
            consumer.assign(partitions)
            await consumer.commit(dict(await consumer.end_offsets(partitions)))
        finally:
            await consumer.stop()


async def purchases_in_timelines(mongodb_url: str, database: str) -> dict[str, list[str]]:
    """The order ids in each customer's timeline, as the customer service stores it."""
    from services.customer.repository import TIMELINE

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    found: dict[str, list[str]] = defaultdict(list)
    try:
        async for doc in client[database][TIMELINE].find({"kind": "purchase"}, {"customer_id": 1, "order_id": 1}):
            found[doc["customer_id"]].append(doc["order_id"])
    finally:
        await client.close()
    return found


def expected_orders(plan: Replay) -> dict[str, list[str]]:
    return {c: sorted(e.order_id or "" for e in ledger) for c, ledger in plan.ledgers.items()}


async def committed_offsets(bootstrap: str, group: str, topic: str = ORDERS_PURCHASES) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {tp.partition: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()
                if tp.topic == topic}
    finally:
        await admin.close()
