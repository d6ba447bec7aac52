"""What several benchmarks need: a private FerretDB, topics of their own, offsets, memory figures."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from deploy.local.infra import RUN_DIR, FerretDB


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f}s")


@contextmanager
def private_store() -> Iterator[str]:
    """A FerretDB (on a PostgreSQL cluster) of the benchmark's own, so that hundreds of thousands of
    writes do not land on the store other work shares; ``BENCH_MONGODB_URL`` names an existing one."""
    if os.environ.get("BENCH_MONGODB_URL"):
        yield os.environ["BENCH_MONGODB_URL"]
        return
    # Under the run directory, not /tmp: as root the cluster belongs to the postgres user, who must
    # be able to reach it.
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="bench-store-", dir=RUN_DIR))
    home.chmod(0o755)
    server = FerretDB(port=free_port(), run_dir=home, postgres_port=free_port())
    try:
        yield server.up()
    finally:
        server.down()
        shutil.rmtree(home, ignore_errors=True)


async def create_topic(kwargs: dict, name: str, partitions: int = 6) -> None:
    """A topic of the benchmark's own (the broker does not create topics on first use)."""
    admin = AIOKafkaAdminClient(**kwargs)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs={"retention.ms": str(3600 * 1000)})])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """The end offset of each partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions: set[int] = set()
        for _ in range(50):  # a topic created a moment ago may not be in the metadata yet
            await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
            partitions = consumer._client.cluster.partitions_for_topic(topic) or set()  # noqa: SLF001
            if partitions:
                break
            await asyncio.sleep(0.1)
        return await consumer.end_offsets([TopicPartition(topic, p) for p in sorted(partitions)])
    finally:
        await consumer.stop()


async def commit(bootstrap: str, group: str, positions: dict[TopicPartition, int]) -> None:
    """Set a consumer group's positions, so that a service starts reading there."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(positions))
        await consumer.commit(positions)
    finally:
        await consumer.stop()


def proc_status(pid: int | str = "self") -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` (peak resident set) of a process, in MiB."""
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found


@contextmanager
def private_servers(prefix: str = "bench-servers-") -> Iterator[tuple[str, str, Path]]:
    """A Kafka and a FerretDB (on its PostgreSQL cluster) of the benchmark's own, on free ports, in a
    directory under the run directory: (bootstrap, MongoDB URL, directory). Torn down and removed at
    the end, so that nothing a whole-system run writes lands on the servers other work shares."""
    from deploy.local.infra import Kafka

    RUN_DIR.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix=prefix, dir=RUN_DIR))
    home.chmod(0o755)  # as root the cluster belongs to the postgres user, who must reach it
    kafka = Kafka(port=free_port(), controller_port=free_port(), run_dir=home, sasl_port=None)
    store = FerretDB(port=free_port(), run_dir=home, postgres_port=free_port())
    try:
        bootstrap = kafka.up()
        yield bootstrap, store.up(), home
    finally:
        kafka.down()
        store.down()
        shutil.rmtree(home, ignore_errors=True)
