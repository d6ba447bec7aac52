"""Complaints: calendar arithmetic, intake throughput on the real broker and store, and one
scheduler pass that warns on every open complaint."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pymongo import AsyncMongoClient

from services.complaints.app import build_app
from services.complaints.settings import ComplaintsSettings
from shared.clock import FixedClock
from shared.contract.topics import CRM_COMPLAINT_INTAKE
from tests.helpers import envelope, produce, running

COMPLAINTS = 500
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


async def broker_figures() -> tuple[float, float, int]:
    run = uuid.uuid4().hex[:8]
    # Start at the end of the topics: earlier runs' complaints are not part of the figures.
    settings = ComplaintsSettings(mongodb_database=f"bench_complaints_{run}", kafka_group_id=f"bench-complaints-{run}",
                                  kafka_auto_offset_reset="latest", scheduler_interval_s=300)
    clock = FixedClock(OPENED)
    app = build_app(settings, clock=clock)
    bootstrap = settings.kafka_bootstrap_servers
    try:
        async with running(app):
            repo = app.state.repo
            probe = f"B-{run}-probe"
            while not await _stored(repo, f"K-{probe}"):  # until the consumer owns its partitions
                await produce(bootstrap, CRM_COMPLAINT_INTAKE, [_submitted(probe)])
                await asyncio.sleep(2)
            started = time.perf_counter()
            await produce(bootstrap, CRM_COMPLAINT_INTAKE, [_submitted(f"B-{run}-{i}") for i in range(COMPLAINTS)])
            while await repo.complaints.count_documents({}) < COMPLAINTS + 1:
                await asyncio.sleep(0.2)
            intake = COMPLAINTS / (time.perf_counter() - started)
            clock.advance(timedelta(hours=18))  # 75 % of the 24 h first-response target
            started = time.perf_counter()
            handled = await app.state.scheduler.run_once()
            scheduler = time.perf_counter() - started
    finally:
        client: AsyncMongoClient = AsyncMongoClient(settings.mongodb_url.get_secret_value())
        await client.drop_database(settings.database_name)
        await client.close()
    return intake, scheduler, handled


def main() -> None:
    rate = calendar_rate()
    intake, scheduler, handled = asyncio.run(broker_figures())
    print("| measure | value |")
    print("|---|---|")
    print(f"| 3-working-day due times on the CN calendar | {rate:,.0f} per s |")
    print(f"| intake, topic to stored complaint ({COMPLAINTS} complaints) | {intake:,.0f} per s |")
    print(f"| one scheduler pass warning {handled} complaints | {scheduler:.2f} s |")


if __name__ == "__main__":
    main()
