"""Complaints: calendar arithmetic, intake throughput on the real broker and store beside plain
single-document inserts into the same store, and one scheduler pass that warns on every open
complaint.

    python -m bench.complaints [--complaints 500]
    python -m bench.complaints --quick
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pymongo import AsyncMongoClient

from bench._report import Section, arguments, emit, ratio
from services.complaints.app import build_app
from services.complaints.settings import ComplaintsSettings
from shared.clock import FixedClock
from shared.contract.topics import CRM_COMPLAINT_INTAKE
from tests.helpers import envelope, produce, running

COMPLAINTS = 500
QUICK_COMPLAINTS = 100
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


async def broker_figures(count: int) -> tuple[float, float, int, float]:
    run = uuid.uuid4().hex[:8]
    # Start at the end of the topics: earlier runs' complaints are not part of the figures. Every run
    # has a database of its own, left in place (dropping databases under load has crashed FerretDB).
    settings = ComplaintsSettings(mongodb_database=f"bench_complaints_{run}", kafka_group_id=f"bench-complaints-{run}",
                                  kafka_auto_offset_reset="latest", scheduler_interval_s=300)
    clock = FixedClock(OPENED)
    app = build_app(settings, clock=clock)
    bootstrap = settings.kafka_bootstrap_servers
    async with running(app):
        repo = app.state.repo
        probe = f"B-{run}-probe"
        while not await _stored(repo, f"K-{probe}"):  # until the consumer owns its partitions
            await produce(bootstrap, CRM_COMPLAINT_INTAKE, [_submitted(probe)])
            await asyncio.sleep(2)
        started = time.perf_counter()
        await produce(bootstrap, CRM_COMPLAINT_INTAKE, [_submitted(f"B-{run}-{i}") for i in range(count)])
        while await repo.complaints.count_documents({}) < count + 1:
            await asyncio.sleep(0.2)
        intake = count / (time.perf_counter() - started)
        clock.advance(timedelta(hours=18))  # 75 % of the 24 h first-response target
        started = time.perf_counter()
        handled = await app.state.scheduler.run_once()
        scheduler = time.perf_counter() - started
    plain = await plain_inserts(settings, run, count)
    return intake, scheduler, handled, plain


def main(argv: list[str] | None = None) -> None:
    parser = arguments(argparse.ArgumentParser(prog="python -m bench.complaints", description=__doc__,
                                               formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--complaints", type=int)
    args = parser.parse_args(argv)
    count = args.complaints or (QUICK_COMPLAINTS if args.quick else COMPLAINTS)
    rate = calendar_rate()
    intake, scheduler, handled, plain = asyncio.run(broker_figures(count))
    section = Section("complaints", "Complaints", (
        f"{count:,} complaints submitted on crm.complaint-intake.v1 to the service running in this process, "
        "then one scheduler pass 18 hours later; due times on the CN business calendar."))
    section.add("3-working-day due times on the CN calendar", f"{rate:,.0f} per s")
    section.add("intake, topic to stored complaint", f"{intake:,.0f} per s",
                f"plain insert_one of {count:,} complaint-sized documents into the same store: {plain:,.0f} per s",
                ratio(intake, plain))
    section.add(f"one scheduler pass warning {handled:,} complaints", f"{scheduler:.2f} s")
    emit(section, args.json)


if __name__ == "__main__":
    main()
