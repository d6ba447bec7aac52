"""The four services as processes on the benchmark's own servers, and what a whole-system run
observes from outside: the consumer groups' lag and a bare read of every record."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench._infra import free_port, wait_for_port
from deploy.local.infra import ROOT
from services.complaints.settings import ComplaintsSettings
from services.customer.settings import CustomerSettings
from services.notifications.settings import NotificationsSettings
from services.tiering.settings import TieringSettings
from shared.settings import ServiceSettings
from tests.e2e.system import SUBSCRIPTIONS
from tests.helpers import api_key
from tests.processes import ServiceProcess

SERVICES = ("customer", "tiering", "complaints", "notifications")
SETTINGS: Mapping[str, type[ServiceSettings]] = {
    "customer": CustomerSettings, "tiering": TieringSettings, "complaints": ComplaintsSettings,
    "notifications": NotificationsSettings,
}
SCOPES = ("customers:read", "tiers:read", "complaints:read", "notifications:read")


def groups(service: str, group_id: str | None = None) -> dict[str, str]:
    """The consumer groups of a service, one per topic it reads (its settings' ``group_for``): group -> topic."""
    settings = SETTINGS[service](kafka_group_id=group_id)
    return {settings.group_for(topic): topic for topic in SUBSCRIPTIONS[service]}


@dataclass
class Stack:
    """Local message sinks and the services, each ``python -m services.<name>`` with its settings
    in the environment (as ``deploy/local/run.py`` starts them), logs in ``log_dir``."""

    bootstrap: str
    mongodb_url: str
    home: Path
    log_dir: Path
    clock: str = "event"
    key: str = ""
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    sinks: subprocess.Popen[bytes] | None = None
    _env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.key, entry = api_key("bench-system", *SCOPES)
        smtp, sms, webhook = free_port(), free_port(), free_port()
        outbox = self.home / "outbox"
        outbox.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / "sinks.log").open("ab") as log:
            self.sinks = subprocess.Popen(
                [sys.executable, "-m", "deploy.local.sinks", "--dir", str(outbox), "--smtp-port", str(smtp),
                 "--sms-port", str(sms), "--webhook-port", str(webhook)], cwd=ROOT, stdout=log,
                stderr=subprocess.STDOUT)
        wait_for_port(smtp)
        self._env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "MONGODB_URL": self.mongodb_url,
            "API_KEYS": json.dumps([entry.model_dump(mode="json")]), "LOG_LEVEL": "INFO", "CLOCK": self.clock,
            "NOTIFICATIONS_SMTP_HOST": "127.0.0.1", "NOTIFICATIONS_SMTP_PORT": str(smtp),
            "NOTIFICATIONS_SMS_URL": f"http://127.0.0.1:{sms}/sms",
            "NOTIFICATIONS_WEBHOOK_URL": f"http://127.0.0.1:{webhook}/notifications",
        }

    def start(self, name: str, label: str | None = None, **env: str) -> ServiceProcess:
        """Started one at a time, as ``run.py`` does: four starting at once on two cores crawl."""
        process = ServiceProcess(name, {**self._env, **env}, self.log_dir / (label or name))
        self.processes[label or name] = process
        return process.start(timeout=120.0)

    def stop(self, label: str) -> None:
        process = self.processes.pop(label, None)
        if process is not None:
            process.stop()

    def close(self) -> None:
        for label in list(self.processes):
            self.stop(label)
        if self.sinks is not None and self.sinks.poll() is None:
            self.sinks.terminate()
            self.sinks.wait(10)


def fresh_logs(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


class Lag:
    """Records not yet committed by each consumer group (group -> topic it reads). A partition the
    group has not committed at all counts from the partition's start."""

    def __init__(self, bootstrap: str, watched: Mapping[str, str]) -> None:
        self.bootstrap = bootstrap
        self.watched = dict(watched)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-lag")
        self.reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)

    async def __aenter__(self) -> Lag:
        await self.admin.start()
        await self.reader.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.reader.stop()
        await self.admin.close()

    async def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        await self.reader._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
        cluster = self.reader._client.cluster  # noqa: SLF001
        return [TopicPartition(t, p) for t in sorted(set(topics)) for p in sorted(cluster.partitions_for_topic(t) or ())]

    async def sample(self) -> dict[str, int]:
        tps = await self.partitions(self.watched.values())
        ends = await self.reader.end_offsets(tps)
        committed = await asyncio.gather(*(self.admin.list_consumer_group_offsets(g) for g in self.watched))
        lag: dict[str, int] = {}
        for (group, topic), offsets in zip(self.watched.items(), committed, strict=True):
            lag[group] = sum(end - (offsets[tp].offset if tp in offsets and offsets[tp].offset >= 0 else 0)
                             for tp, end in ends.items() if tp.topic == topic)
        return lag


@dataclass
class Drain:
    """How a set of groups caught up: seconds from ``since`` until all were at lag 0 (and stayed so
    for the settle time), None if they did not; when each group last reached 0; total lag over time."""

    seconds: float | None
    finished: dict[str, float]
    series: list[tuple[float, int]]
    left: dict[str, int]


async def drained(lag: Lag, since: float, timeout: float, settle: float = 3.0, every: float = 0.5) -> Drain:
    """Poll the lag until every group has committed everything, twice over ``settle`` seconds (a
    service publishes what it derives a moment after committing its input, and its readers' lag
    then grows again)."""
    finished: dict[str, float] = {}
    series: list[tuple[float, int]] = []
    zero_since: float | None = None
    current: dict[str, int] = {}
    while time.monotonic() - since < timeout:
        current = await lag.sample()
        now = time.monotonic() - since
        series.append((now, sum(current.values())))
        for group, left in current.items():
            if left:
                finished.pop(group, None)
            else:
                finished.setdefault(group, now)
        if not any(current.values()):
            zero_since = zero_since if zero_since is not None else now
            if now - zero_since >= settle:
                return Drain(zero_since, finished, series, current)
        else:
            zero_since = None
        await asyncio.sleep(every)
    return Drain(None, finished, series, current)


async def topic_sizes(bootstrap: str) -> dict[str, int]:
    """Records each topic holds (end minus start offsets, all partitions), largest first."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        topics = [t for t in await consumer.topics() if not t.startswith("__")]
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
        cluster = consumer._client.cluster  # noqa: SLF001
        tps = [TopicPartition(t, p) for t in topics for p in cluster.partitions_for_topic(t) or ()]
        ends, starts = await consumer.end_offsets(tps), await consumer.beginning_offsets(tps)
        sizes: dict[str, int] = {}
        for tp in tps:
            sizes[tp.topic] = sizes.get(tp.topic, 0) + ends[tp] - starts[tp]
        return dict(sorted(((t, n) for t, n in sizes.items() if n), key=lambda kv: -kv[1]))
    finally:
        await consumer.stop()


async def bare_read(bootstrap: str) -> tuple[int, float]:
    """One plain consumer (no group, nothing decoded) reading every record of every topic once, from
    the start of each partition to its end: (records, seconds). Timed from after the client's start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024,
                                fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        started = time.monotonic()
        topics = [t for t in await consumer.topics() if not t.startswith("__")]
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
        cluster = consumer._client.cluster  # noqa: SLF001
        tps = [TopicPartition(t, p) for t in topics for p in cluster.partitions_for_topic(t) or ()]
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > starts[tp]}
        if not pending:
            return 0, time.monotonic() - started
        consumer.assign(sorted(pending))
        await consumer.seek_to_beginning(*pending)
        count = 0
        while pending:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, records in batches.items():
                count += len(records)
                if records and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
        return count, time.monotonic() - started
    finally:
        await consumer.stop()
