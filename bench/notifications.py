"""Notifications: a holiday fan-out to 100 000 customers, through the whole pipeline, into an SMTP sink.

Customers are seeded straight into the service's store (Mid-Autumn Festival 2026, 10:30 in
Shanghai); one scheduler pass then decides, records, renders, mails and publishes every greeting.
The SMTP sink runs in its own process so it does not share this one's CPU time. Outcomes go to a
topic of the benchmark's own, so the shared ``crm.notifications.v1`` is not flooded, and the store is
a FerretDB of the benchmark's own (in a temporary directory), so 200 000 writes do not land on the
store other work shares; ``BENCH_MONGODB_URL`` points it at an existing one instead.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from deploy.local.infra import FerretDB
from services.notifications.app import build_channels
from services.notifications.domain import Profile
from services.notifications.notifier import Notifier
from services.notifications.repository import INDEXES, Repository, profile_doc
from services.notifications.scheduler import Scheduler
from services.notifications.settings import NotificationsSettings
from services.notifications.templates import Templates
from shared.clock import FixedClock
from shared.kafka import admin_kwargs
from shared.service import Runtime

CUSTOMERS = int(os.environ.get("BENCH_NOTIFICATIONS_CUSTOMERS", "100000"))
TARGET_PER_S = 500
#: 10:30 on the Mid-Autumn Festival 2026 in Shanghai: past, so every event time is valid.
MID_AUTUMN = datetime(2026, 9, 25, 2, 30, tzinfo=UTC)
OUTCOME_TOPIC = "bench.notifications.v1"


class _TopicPublisher:
    """Publishes what the notifier publishes, but on the benchmark's own topic."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker

    async def publish(self, value: bytes, **kwargs: Any) -> None:
        await self.broker.publish(value, topic=OUTCOME_TOPIC, **kwargs)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


@contextmanager
def _private_store() -> Iterator[str]:
    if os.environ.get("BENCH_MONGODB_URL"):
        yield os.environ["BENCH_MONGODB_URL"]
        return
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-ferretdb-") as home:
        os.mkdir(os.path.join(home, "data"))
        server = subprocess.Popen([str(FerretDB().binary), f"-sqlite-url=file:{home}/data/",
                                   f"-listen-addr=127.0.0.1:{port}", "-log-level=error"], cwd=home,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield f"mongodb://127.0.0.1:{port}/"
        finally:
            server.terminate()
            server.wait(20)


async def _wait_for_port(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError("the SMTP sink did not start")


async def _ensure_topic(settings: NotificationsSettings) -> None:
    admin = AIOKafkaAdminClient(**admin_kwargs(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(OUTCOME_TOPIC, settings.kafka_topic_partitions, 1,
                                            topic_configs={"retention.ms": str(3600 * 1000)})])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def _seed(repo: Repository, run: str, since: date) -> float:
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for i in range(CUSTOMERS):
        profile = Profile(customer_id=f"B-{run}-{i:06d}", name=f"顾客{i}", email=f"b{i}-{run}@bench.example",
                          locale="zh-CN" if i % 4 else "en-US", timezone="Asia/Shanghai", country="CN",
                          preferred_channel="email", consents={"care_messages": True, "email": True}, since=since)
        batch.append(profile_doc(profile, "Asia/Shanghai"))
        if len(batch) == 5000:
            await repo.customers.insert_many(batch, ordered=False)
            batch = []
    if batch:
        await repo.customers.insert_many(batch, ordered=False)
    return time.perf_counter() - started


async def run(mongodb_url: str) -> dict[str, float]:
    run_id = uuid.uuid4().hex[:8]
    port = _free_port()
    sink = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                             "-c", "aiosmtpd.handlers.Sink"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    settings = NotificationsSettings(mongodb_url=mongodb_url, mongodb_database=f"bench_notifications_{run_id}",
                                     smtp_port=port, webhook_url="", smtp_pool_size=16)
    clock = FixedClock(MID_AUTUMN)
    runtime = Runtime.create(settings, clock=clock, indexes=INDEXES)
    channels = build_channels(settings)
    try:
        await _wait_for_port(port)
        await _wait_for_port(int(mongodb_url.rsplit(":", 1)[1].strip("/")))
        await _ensure_topic(settings)
        await runtime.store.ensure_indexes()
        await runtime.broker.start()
        repo = Repository(runtime.store)
        seed_s = await _seed(repo, run_id, date(2026, 9, 1))
        rss_before = _rss_mib()
        notifier = Notifier(settings, repo, Templates(settings.default_locale), channels, clock)
        notifier.publisher = _TopicPublisher(runtime.broker)
        started = time.perf_counter()
        await Scheduler(settings, repo, notifier).tick()
        elapsed = time.perf_counter() - started
        sent = await repo.outcomes.count_documents({"status": "sent"})
        other = await repo.notifications.count_documents({}) - sent
        return {"customers": CUSTOMERS, "sent": sent, "not_sent": other, "seconds": elapsed,
                "per_s": sent / elapsed, "seed_s": seed_s, "rss_before_mib": rss_before, "rss_peak_mib": _rss_mib()}
    finally:
        for channel in channels.values():
            await channel.close()
        await runtime.broker.stop()
        await runtime.store.client.drop_database(settings.database_name)
        await runtime.store.close()
        sink.terminate()
        sink.wait(10)


def main() -> None:
    with _private_store() as mongodb_url:
        figures = asyncio.run(run(mongodb_url))
    verdict = "met" if figures["per_s"] >= TARGET_PER_S else "missed"
    print("| measure | value |")
    print("|---|---|")
    print(f"| customers fanned out | {figures['customers']:,.0f} |")
    print(f"| greetings sent (SMTP sink) | {figures['sent']:,.0f} |")
    print(f"| not sent | {figures['not_sent']:,.0f} |")
    print(f"| fan-out time | {figures['seconds']:.1f} s |")
    print(f"| throughput | {figures['per_s']:,.0f} messages/s (target {TARGET_PER_S}/s: {verdict}) |")
    print(f"| peak RSS after seeding | {figures['rss_before_mib']:.0f} MiB |")
    print(f"| peak RSS after fan-out | {figures['rss_peak_mib']:.0f} MiB |")
    print(f"| seeding {figures['customers']:,.0f} customers | {figures['seed_s']:.1f} s |")


if __name__ == "__main__":
    main()
