"""Notifications: a holiday fan-out to 100 000 customers, through the whole pipeline, into an SMTP
sink, beside a bare SMTP send loop into the same sink.

    python -m bench.notifications [--customers 100000]
    python -m bench.notifications --quick

Customers are seeded straight into the service's store (Mid-Autumn Festival 2026, 10:30 in
Shanghai); one scheduler pass then decides, records, renders, mails and publishes every greeting.
The SMTP sink runs in its own process so it does not share this one's CPU time. Outcomes go to a
topic of the benchmark's own, so the shared ``crm.notifications.v1`` is not flooded, and the store is
a FerretDB of the benchmark's own (``bench._infra.private_store``), so 200 000 writes do not land on
the store other work shares.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime
from email.header import Header
from email.mime.text import MIMEText
from typing import Any

import aiosmtplib

from bench._infra import create_topic, free_port, private_store, wait_for_port
from bench._report import Section, arguments, emit, ratio, verdict
from services.notifications.app import build_channels
from services.notifications.domain import Profile
from services.notifications.workflow import Workflow
from services.notifications.repository import INDEXES, Repository
from services.notifications.scheduler import Scheduler
from services.notifications.settings import NotificationsSettings
from services.notifications.templates import Templates
from shared.clock import FixedClock
from shared.kafka import Publisher, admin_kwargs, outbound
from shared.pii import PiiCipher
from shared.service import Runtime

CUSTOMERS = int(os.environ.get("BENCH_NOTIFICATIONS_CUSTOMERS", "100000"))
QUICK_CUSTOMERS = 2_000
TARGET_PER_S = 500
POOL = 16
#: Messages the bare SMTP loop sends: enough for a steady rate, a fraction of the fan-out's time.
BARE_MESSAGES = 10_000
#: 10:30 on the Mid-Autumn Festival 2026 in Shanghai: past, so every event time is valid.
MID_AUTUMN = datetime(2026, 9, 25, 2, 30, tzinfo=UTC)
OUTCOME_TOPIC = "bench.notifications.v1"


class _TopicPublisher:
    """Publishes what the workflow publishes, but on the benchmark's own topic."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def publish(self, events: Any, **_: Any) -> None:
        await (await self.publisher.send(outbound(e)._replace(topic=OUTCOME_TOPIC) for e in events))


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


async def _seed(repo: Repository, run: str, customers: int, since: date) -> float:
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for i in range(customers):
        profile = Profile(customer_id=f"B-{run}-{i:06d}", name=f"顾客{i}", email=f"b{i}-{run}@bench.example",
                          locale="zh-CN" if i % 4 else "en-US", timezone="Asia/Shanghai", country="CN",
                          preferred_channel="email", consents={"care_messages": True, "email": True}, since=since)
        batch.append(repo.profile_document(profile, "Asia/Shanghai"))
        if len(batch) == 5000:
            await repo.customers.insert_many(batch, ordered=False)
            batch = []
    if batch:
        await repo.customers.insert_many(batch, ordered=False)
    return time.perf_counter() - started


async def bare_smtp(port: int, messages: int, run: str) -> float:
    """The comparison: greetings of the same size sent over ``POOL`` open connections straight to the
    sink, with nothing decided, stored, rendered or published."""
    body = "亲爱的顾客，中秋节快乐！感谢您一直以来的支持，祝您和家人团圆美满。" * 3

    async def connection(share: int, n: int) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
        await client.connect()
        try:
            for i in range(share):
                mail = MIMEText(body, "plain", "utf-8")
                mail["From"] = "care@bench.example"
                mail["To"] = f"bare{n}-{i}-{run}@bench.example"
                mail["Subject"] = Header("中秋节快乐", "utf-8")
                await client.send_message(mail)
        finally:
            await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(connection(messages // POOL, n) for n in range(POOL)))
    return messages // POOL * POOL / (time.perf_counter() - started)


async def run(mongodb_url: str, customers: int) -> dict[str, float]:
    run_id = uuid.uuid4().hex[:8]
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                             "-c", "aiosmtpd.handlers.Sink"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    settings = NotificationsSettings(mongodb_url=mongodb_url, mongodb_database=f"bench_notifications_{run_id}",
                                     smtp_port=port, webhook_url="", smtp_pool_size=POOL)
    clock = FixedClock(MID_AUTUMN)
    runtime = Runtime.create(settings, clock=clock, indexes=INDEXES)
    channels = build_channels(settings)
    try:
        await asyncio.to_thread(wait_for_port, port)
        await create_topic(admin_kwargs(settings), OUTCOME_TOPIC, settings.kafka_topic_partitions)
        await runtime.store.ensure_indexes()
        await runtime.publisher.start()
        repo = Repository(runtime.store, PiiCipher.from_settings(settings))
        seed_s = await _seed(repo, run_id, customers, date(2026, 9, 1))
        bare = await bare_smtp(port, min(BARE_MESSAGES, customers), run_id)
        rss_before = _rss_mib()
        workflow = Workflow(settings, repo, Templates(settings.default_locale), channels, clock,
                            _TopicPublisher(runtime.publisher))  # type: ignore[arg-type]
        scheduler = Scheduler(settings, repo, workflow)
        await scheduler.prime()  # the start pass: the seeded customers' time zones go on the service's list
        started = time.perf_counter()
        await scheduler.tick()
        elapsed = time.perf_counter() - started
        sent = await repo.outcomes.count_documents({"status": "sent"})
        other = await repo.notifications.count_documents({}) - sent
        return {"customers": customers, "sent": sent, "not_sent": other, "seconds": elapsed,
                "per_s": sent / elapsed, "bare_per_s": bare, "bare_messages": min(BARE_MESSAGES, customers),
                "seed_s": seed_s, "rss_before_mib": rss_before, "rss_peak_mib": _rss_mib()}
    finally:
        for channel in channels.values():
            await channel.close()
        await runtime.publisher.stop()
        await runtime.store.close()
        sink.terminate()
        sink.wait(10)


def section(f: dict[str, float]) -> Section:
    out = Section("notifications", "Notifications", (
        f"Holiday fan-out (Mid-Autumn Festival greeting) to {f['customers']:,.0f} customers seeded into the "
        f"service's store, through one scheduler pass, by e-mail into a local SMTP sink ({POOL} connections)."))
    out.add("fan-out throughput (decide, record, render, mail, publish)", f"{f['per_s']:,.0f} messages/s",
            f"bare SMTP send loop into the same sink, {f['bare_messages']:,.0f} messages: "
            f"{f['bare_per_s']:,.0f} messages/s", ratio(f["per_s"], f["bare_per_s"]),
            verdict(f["per_s"] >= TARGET_PER_S, f"≥ {TARGET_PER_S}/s"))
    out.add(f"fan-out time, {f['customers']:,.0f} customers", f"{f['seconds']:.1f} s",
            f"the bare loop at its rate: {f['customers'] / f['bare_per_s']:.1f} s",
            ratio(f["seconds"], f["customers"] / f["bare_per_s"]))
    out.add("greetings sent / not sent", f"{f['sent']:,.0f} / {f['not_sent']:,.0f}",
            f"customers: {f['customers']:,.0f}")
    out.add("peak RSS of the process after the fan-out", f"{f['rss_peak_mib']:.0f} MiB",
            f"after seeding, before the fan-out: {f['rss_before_mib']:.0f} MiB",
            ratio(f["rss_peak_mib"], f["rss_before_mib"]))
    out.add(f"seeding {f['customers']:,.0f} customers (setup, not a figure of the service)", f"{f['seed_s']:.1f} s")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = arguments(argparse.ArgumentParser(prog="python -m bench.notifications", description=__doc__,
                                               formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--customers", type=int)
    args = parser.parse_args(argv)
    customers = args.customers or (QUICK_CUSTOMERS if args.quick else CUSTOMERS)
    with private_store() as mongodb_url:
        figures = asyncio.run(run(mongodb_url, customers))
    emit(section(figures), args.json)


if __name__ == "__main__":
    main()
