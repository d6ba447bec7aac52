"""Complaints: calendar arithmetic, intake throughput on the real broker and store beside plain
single-document inserts into the same store, and scheduler passes over 10,000 open complaints: one
with nothing due, one that warns on every one of them.

    python -m bench.complaints [--complaints 10000]
    python -m bench.complaints --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from bench._infra import offsets
from bench._report import Section, arguments, emit, ratio, verdict
from services.complaints.app import build_app
from services.complaints.settings import ComplaintsSettings
from shared.clock import FixedClock
from shared.contract.topics import CRM_COMPLAINT_INTAKE
from shared.kafka import PRODUCER_OPTIONS
from tests.helpers import envelope, produce, running

COMPLAINTS = 10_000
QUICK_COMPLAINTS = 500
#: The issue's targets: intake rate, and one scheduler pass over 10,000 open complaints.
TARGET_INTAKE_PER_S = 500
TARGET_PASS_S = 5.0
#: A past working Monday, so event times are valid and no holiday interferes.
OPENED = datetime(2026, 3, 2, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def calendar_rate() -> float:
    calendar = ComplaintsSettings().calendar()
    rng = random.Random(7)
    starts = [OPENED + timedelta(minutes=rng.randrange(0, 60 * 24 * 300)) for _ in range(2000)]
    started = time.perf_counter()
    for start in starts:
        calendar.add_working_days(start, 3)
    return len(starts) / (time.perf_counter() - started)


async def _stored(repo, complaint_id: str) -> bool:  # noqa: ANN001
    return await repo.complaints.count_documents({"_id": complaint_id}) > 0


async def produce_fast(bootstrap: str, messages: list[tuple[bytes, dict]]) -> None:
    """All records handed to one producer before waiting for any: the producer is not what is measured."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_OPTIONS)
    await producer.start()
    try:
        sent = [await producer.send(CRM_COMPLAINT_INTAKE, json.dumps(value).encode(), key=key)
                for key, value in messages]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def handled(bootstrap: str, group: str, ends: dict[TopicPartition, int]) -> None:
    """Until ``group`` has committed every record up to ``ends``: the service commits a batch once
    its complaints are stored and their events published. (Counting the stored complaints instead,
    twice a second, cost FerretDB v1 a read of the whole collection each time: seconds of its CPU per
    count at 10,000 complaints, taken from the service being measured.)"""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            if all((committed[tp].offset if tp in committed else -1) >= end for tp, end in ends.items()):
                return
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


def _submitted(customer: str) -> tuple[bytes, dict]:
    return customer.encode(), envelope("complaint.submitted", customer, {
        "complaint_id": f"K-{customer}", "channel": "app", "category": "delivery", "subject": "late"}, time_=OPENED)


async def plain_inserts(settings: ComplaintsSettings, run: str, count: int) -> float:
    """The comparison: ``count`` documents of a complaint's size inserted one at a time into the
    same store, the least a stored complaint costs."""
    client: AsyncMongoClient = AsyncMongoClient(settings.mongodb_url.get_secret_value())
    try:
        collection = client[f"bench_complaints_plain_{run}"]["complaints"]
        started = time.perf_counter()
        for i in range(count):
            await collection.insert_one({"_id": f"K-{run}-{i}", "customer_id": f"B-{run}-{i}", "status": "received",
                                         "channel": "app", "category": "delivery", "subject": "late",
                                         "opened_at": OPENED, "history": [{"status": "received", "at": OPENED}]})
        return count / (time.perf_counter() - started)
    finally:
        await client.close()


async def broker_figures(count: int) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]
    # Start at the end of the topics: earlier runs' complaints are not part of the figures. Every run
    # has a database of its own, left in place (dropping databases under load has crashed FerretDB).
    settings = ComplaintsSettings(mongodb_database=f"bench_complaints_{run}", kafka_group_id=f"bench-complaints-{run}",
                                  kafka_auto_offset_reset="latest", scheduler_interval_s=300)
    clock = FixedClock(OPENED)
    app = build_app(settings, clock=clock)
    bootstrap = settings.kafka_bootstrap_servers
    figures: dict[str, float] = {}
    async with running(app):
        repo, scheduler = app.state.repo, app.state.scheduler
        probe = f"B-{run}-probe"
        while not await _stored(repo, f"K-{probe}"):  # until the consumer owns its partitions
            await produce(bootstrap, CRM_COMPLAINT_INTAKE, [_submitted(probe)])
            await asyncio.sleep(2)
        started = time.perf_counter()
        await produce_fast(bootstrap, [_submitted(f"B-{run}-{i}") for i in range(count)])
        await handled(bootstrap, settings.group_for(CRM_COMPLAINT_INTAKE), await offsets(bootstrap, CRM_COMPLAINT_INTAKE))
        figures["intake"] = count / (time.perf_counter() - started)
        stored = await repo.complaints.count_documents({})
        assert stored == count + 1, f"{stored} complaints stored of {count + 1}"
        # Passes every few seconds as in service, up to a minute before the first warnings (75 % of
        # the 24 h first-response target): then one pass with nothing due, one that warns on all.
        clock.advance(timedelta(hours=17, minutes=59))
        await scheduler.run_once()
        clock.advance(timedelta(seconds=5))
        started = time.perf_counter()
        await scheduler.run_once()
        figures["idle_pass"] = time.perf_counter() - started
        clock.advance(timedelta(minutes=1))
        started = time.perf_counter()
        figures["handled"] = await scheduler.run_once()
        figures["pass"] = time.perf_counter() - started
    figures["plain"] = await plain_inserts(settings, run, count)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = arguments(argparse.ArgumentParser(prog="python -m bench.complaints", description=__doc__,
                                               formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--complaints", type=int)
    args = parser.parse_args(argv)
    count = args.complaints or (QUICK_COMPLAINTS if args.quick else COMPLAINTS)
    rate = calendar_rate()
    f = asyncio.run(broker_figures(count))
    handled = int(f["handled"])
    section = Section("complaints", "Complaints", (
        f"{count:,} complaints submitted on crm.complaint-intake.v1 to the service running in this process, "
        "then scheduler passes as the clock nears 18 hours later: one with nothing due, then the one that warns "
        "on every complaint; due times on the CN business calendar."))
    section.add("3-working-day due times on the CN calendar", f"{rate:,.0f} per s")
    section.add("intake, topic to stored complaint", f"{f['intake']:,.0f} per s",
                f"plain insert_one of {count:,} complaint-sized documents into the same store: {f['plain']:,.0f} per s",
                ratio(f["intake"], f["plain"]), verdict(f["intake"] >= TARGET_INTAKE_PER_S, f"≥ {TARGET_INTAKE_PER_S}/s"))
    section.add(f"one scheduler pass over {count + 1:,} open complaints, none due", f"{f['idle_pass']:.3f} s")
    section.add(f"one scheduler pass warning {handled:,} open complaints", f"{f['pass']:.2f} s",
                target=verdict(f["pass"] <= TARGET_PASS_S, f"≤ {TARGET_PASS_S:.0f} s") if handled >= 10_000 else "—")
    emit(section, args.json)


if __name__ == "__main__":
    main()
