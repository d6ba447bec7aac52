"""Tiering: replay throughput against a bare consumer and a naive handler, change latency at a steady
rate, population refresh of 100 k stored customers, and memory during the replay.

    python -m bench.tiering [--events 200000 --customers 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient

from services.tiering import domain
from services.tiering.app import build_app
from services.tiering.handlers import SUBSCRIBED
from services.tiering.policy import default_policy
from services.tiering.repository import INDEXES, CustomerState, Repository, state_doc
from services.tiering.settings import TieringSettings
from shared.clock import FixedClock
from shared.contract import PurchaseCompleted, PurchaseRefunded
from shared.contract.topics import CRM_TIER_CHANGES, ORDERS_PURCHASES
from shared.kafka import subscriber_options
from shared.mongo import Store
from tests.helpers import running

NOW = datetime.now(UTC).replace(microsecond=0)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def purchase(customer: str, order: str, at: datetime, rng: random.Random) -> bytes:
    return json.dumps({
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": "bench", "type": "order.purchase.completed",
        "subject": customer, "time": at.isoformat(), "datacontenttype": "application/json", "dataschemaversion": 1,
        "data": {"order_id": order, "total_amount": f"{rng.randrange(500, 500_000) / 100:.2f}",
                 "currency": rng.choice(("CNY", "CNY", "CNY", "USD", "EUR")), "channel": "online"},
    }).encode()


async def offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in consumer._client.cluster.partitions_for_topic(topic) or ()]
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def commit(bootstrap: str, group: str, positions: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(positions))
        await consumer.commit(positions)
    finally:
        await consumer.stop()


async def produce_replay(bootstrap: str, events: int, customers: int, run: str) -> tuple[float, Any, Any]:
    rng = random.Random(42)
    start = await offsets(bootstrap, ORDERS_PURCHASES)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024, acks=1)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for i in range(events):
            customer = f"B{rng.randrange(customers)}-{run}"
            at = NOW - timedelta(days=360) + timedelta(seconds=i * 360 * 86400 // events)
            pending.append(await producer.send(ORDERS_PURCHASES, purchase(customer, f"O{i}-{run}", at, rng),
                                               key=customer.encode()))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    rate = events / (time.perf_counter() - started)
    return rate, start, await offsets(bootstrap, ORDERS_PURCHASES)


async def bare_consumer(bootstrap: str, start: dict, end: dict) -> float:
    """(a) Read and decode the replayed range, nothing else."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        remaining = {tp: end[tp] for tp in start if end[tp] > start[tp]}
        count = 0
        started = time.perf_counter()
        while remaining:
            for tp, records in (await consumer.getmany(timeout_ms=500, max_records=5000)).items():
                for record in records:
                    json.loads(record.value)
                    count += 1
                    if record.offset + 1 >= end[tp]:
                        remaining.pop(tp, None)
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def naive_handler(settings: TieringSettings, start: dict, subset: int) -> float:
    """(b) A FastStream handler doing one store round trip per event."""
    group = f"{settings.kafka_group_id}-naive"
    await commit(settings.kafka_bootstrap_servers, group, start)
    client: AsyncMongoClient = AsyncMongoClient(settings.mongodb_url.get_secret_value())
    ledger = client[f"{settings.database_name}_naive"]["ledger"]
    broker = KafkaBroker(settings.kafka_bootstrap_servers, logger=None)  # no per-message log lines
    seen = 0
    done = asyncio.Event()
    started = 0.0

    @broker.subscriber(ORDERS_PURCHASES, **subscriber_options(settings, ORDERS_PURCHASES, group_id=group))
    async def handle(event: PurchaseCompleted | PurchaseRefunded) -> None:
        nonlocal seen, started
        if not started:
            started = time.perf_counter()
        await ledger.insert_one({"_id": event.id, "customer_id": event.subject,
                                 "amount": str(event.data.total_amount)})  # type: ignore[union-attr]
        seen += 1
        if seen >= subset:
            done.set()

    await broker.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=600)
        return seen / (time.perf_counter() - started)
    finally:
        await broker.stop()
        await client.close()


async def tiering_replay(settings: TieringSettings, start: dict, events: int) -> tuple[float, float, Any, Any]:
    """(c) The service itself, in process, from the start of the replayed range."""
    await commit(settings.kafka_bootstrap_servers, settings.group_for(ORDERS_PURCHASES), start)
    for topic in SUBSCRIBED[1:]:
        await commit(settings.kafka_bootstrap_servers, settings.group_for(topic),
                     await offsets(settings.kafka_bootstrap_servers, topic))
    app = build_app(settings)
    engine = app.state.engine
    peak = rss_mb()
    ctx = running(app)
    await ctx.__aenter__()
    started = time.perf_counter()
    while engine.events_in.labels("purchase")._value.get() < events:
        await asyncio.sleep(0.25)
        peak = max(peak, rss_mb())
    rate = events / (time.perf_counter() - started)
    return rate, peak, app, ctx


async def latency(settings: TieringSettings, run: str, rate: int = 1000, seconds: int = 10) -> tuple[float, float]:
    """Purchase → customer.tier.changed at a steady rate; every purchase is a new customer's first."""
    bootstrap = settings.kafka_bootstrap_servers
    watch_from = await offsets(bootstrap, CRM_TIER_CHANGES)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    consumer.assign(list(watch_from))
    for tp, offset in watch_from.items():
        consumer.seek(tp, offset)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    rng = random.Random(1)

    async def watch() -> None:
        while True:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for record in records:
                    key = record.key.decode() if record.key else ""
                    if key in sent and key not in seen:
                        seen[key] = now

    watcher = asyncio.create_task(watch())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        started = time.perf_counter()
        for i in range(rate * seconds):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            customer = f"L{i}-{run}"
            sent[customer] = time.perf_counter()
            await producer.send(ORDERS_PURCHASES, purchase(customer, f"LO{i}-{run}", NOW - timedelta(minutes=1), rng),
                                key=customer.encode())
        deadline = time.perf_counter() + 60
        while len(seen) < len(sent) and time.perf_counter() < deadline and not watcher.done():
            await asyncio.sleep(0.2)
        if watcher.done():
            watcher.result()  # surface what stopped the watch
    finally:
        watcher.cancel()
        await producer.stop()
        await consumer.stop()
    waits = sorted((seen[k] - sent[k]) * 1000 for k in seen)
    missing = len(sent) - len(seen)
    waits += [float("inf")] * missing
    return statistics.median(waits), waits[int(len(waits) * 0.99) - 1]


async def refresh_100k(settings: TieringSettings, customers: int = 100_000) -> tuple[float, int, int]:
    """A steady-state refresh over ``customers`` stored states (written directly, classified as the
    cut-offs say, so the refresh measures the population pass rather than a first classification)."""
    policy = default_policy()
    rng = random.Random(3)
    store = Store.connect(settings, INDEXES)
    await store.ensure_indexes()
    repo = Repository(store)
    states = []
    for i in range(customers):
        state = CustomerState(f"P{i}")
        for n in range(rng.randrange(1, 6)):
            minor = rng.randrange(1_000, 2_000_000)
            state.ledger[f"p:{i}-{n}"] = domain.Entry(f"p:{i}-{n}", "purchase",
                                                      NOW - timedelta(days=rng.randrange(1, 360)), minor)
        state.metrics = domain.compute_metrics(state.ledger.values(), NOW, policy)
        state.rev = 1
        states.append(state)
    m = [s.metrics for s in states]
    cutoffs = domain.compute_cutoffs([x.spend_12m for x in m], [x.orders_12m for x in m],
                                     [x.recency_days(NOW) or 0 for x in m], policy, NOW, 1)
    await repo.store_cutoffs(cutoffs)
    await repo.store_policy(policy, NOW)
    await repo.activate_policy(policy.version, NOW)
    docs = []
    for state in states:
        targets = domain.classify(state.metrics, cutoffs, policy, NOW)
        state.snapshot, _ = domain.decide(domain.Snapshot(), targets, state.metrics, cutoffs, policy, NOW, NOW)
        docs.append(state_doc(state, policy.version, NOW))
    for chunk in range(0, len(docs), 5000):
        await store["customers"].insert_many(docs[chunk:chunk + 5000], ordered=False)
    del states, docs
    await store.close()
    for topic in SUBSCRIBED:  # only the stored population counts, not what the shared topics hold
        await commit(settings.kafka_bootstrap_servers, settings.group_for(topic),
                     await offsets(settings.kafka_bootstrap_servers, topic))
    app = build_app(settings, clock=FixedClock(NOW))
    async with running(app):
        engine = app.state.engine
        await engine.ready()
        started = time.perf_counter()
        result = await engine.refresh()
        seconds = time.perf_counter() - started
    return seconds, result["population"], result["changed_customers"]


async def run(events: int, customers: int, naive_subset: int, refresh_customers: int) -> list[tuple[str, str, str]]:
    run_id = uuid.uuid4().hex[:8]
    base = TieringSettings()
    bootstrap = base.kafka_bootstrap_servers
    produce_rate, start, end = await produce_replay(bootstrap, events, customers, run_id)
    bare = await bare_consumer(bootstrap, start, end)
    naive = await naive_handler(TieringSettings(mongodb_database=f"bench_tiering_{run_id}",
                                                kafka_group_id=f"bench-tiering-{run_id}"), start, naive_subset)
    settings = TieringSettings(mongodb_database=f"bench_tiering_{run_id}", kafka_group_id=f"bench-tiering-{run_id}",
                               scheduler_interval_s=3600, refresh_interval_s=0,
                               cache_customers=max(50_000, customers))
    rate, peak, app, ctx = await tiering_replay(settings, start, events)
    try:
        p50, p99 = await latency(settings, run_id)
    finally:
        await ctx.__aexit__(None, None, None)
    refresh_s, population, changed = await refresh_100k(TieringSettings(
        mongodb_database=f"bench_tiering_refresh_{run_id}", kafka_group_id=f"bench-tiering-refresh-{run_id}",
        scheduler_interval_s=3600, refresh_interval_s=0, cache_customers=120_000), refresh_customers)
    return [
        ("replay produced", f"{events:,} purchases over {customers:,} customers", f"{produce_rate:,.0f} ev/s"),
        ("(a) bare aiokafka read + JSON decode", "same range", f"{bare:,.0f} ev/s"),
        ("(b) naive FastStream handler, one store write per event", f"first {naive_subset:,}", f"{naive:,.0f} ev/s"),
        ("(c) tiering service", f"{events:,} events", f"{rate:,.0f} ev/s"),
        ("(c) / (a)", "target ≥ 0.25", f"{rate / bare:.2f}"),
        ("(c) / (b)", "target ≥ 10", f"{rate / naive:.1f}"),
        ("purchase → customer.tier.changed p50", "1,000 ev/s for 10 s", f"{p50:,.0f} ms"),
        ("purchase → customer.tier.changed p99", "target ≤ 250 ms", f"{p99:,.0f} ms"),
        ("population refresh", f"{population:,} customers, {changed} changed", f"{refresh_s:.1f} s"),
        ("peak RSS during the replay (whole process)", "target < 400 MB", f"{peak:,.0f} MB"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tiering")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--naive-subset", type=int, default=5_000)
    parser.add_argument("--refresh-customers", type=int, default=100_000)
    args = parser.parse_args(None if __name__ == "__main__" else [])
    rows = asyncio.run(run(args.events, args.customers, args.naive_subset, args.refresh_customers))
    print("| measure | scope | result |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
