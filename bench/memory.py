"""Peak memory of each service: the four services as separate processes under a realistic load,
each one's peak resident set (``VmHWM``) beside its idle resident set just after start.

    python -m bench.memory [--customers 5000 --purchases 25000 --complaints 1000]
    python -m bench.memory --quick

The load is what upstream systems send, as contract events: registrations on
``crm.customer-intake.v1`` (the customer service turns them into the profiles on
``crm.customers.v1`` that the other three keep), purchases over the past year on
``orders.purchases.v1``, and complaints on ``crm.complaint-intake.v1``; then everything they cause
(tier changes, snapshots, complaint events, care messages into a local SMTP sink) until every
service's consumer groups have caught up with every topic they read. The groups and databases are
the run's own, set at the end of the shared topics before the services start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from urllib.parse import unquote

import httpx
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench._infra import free_port, offsets, proc_status, wait_for_port
from bench._report import Section, arguments, emit, ratio, verdict
from deploy.local.infra import RUN_DIR
from shared.contract import CloudEvent, serialize_event
from shared.contract.events import (
    ComplaintSubmitted,
    ComplaintSubmittedData,
    Consents,
    CustomerProfileData,
    CustomerRegistered,
    PurchaseCompleted,
    PurchaseCompletedData,
)
from shared.contract.topics import (
    CATALOGUE,
    CRM_COMPLAINTS,
    CRM_CUSTOMER_TIERS,
    CRM_CUSTOMERS,
    CRM_NOTIFICATIONS,
    CRM_TIER_CHANGES,
)
from shared.kafka import CLOUDEVENTS_CONTENT_TYPE, admin_kwargs, ensure_topics
from shared.settings import ServiceSettings
from tests.helpers import skip_backlog
from tests.processes import ServiceProcess

SERVICES = ("customer", "tiering", "complaints", "notifications")
#: ``settle_timeout``: at most this long (s) after the load is published for the services to handle it.
#: FerretDB v1 costs the per-event services (customer, notifications) tens of milliseconds per write,
#: so the full load is more than they finish in that time: memory is read then, with a backlog left.
FULL = {"customers": 5_000, "purchases": 25_000, "complaints": 1_000, "settle_timeout": 600}
QUICK = {"customers": 200, "purchases": 1_000, "complaints": 50, "settle_timeout": 240}
#: Several interpreters importing at once on a busy machine take a while to be healthy.
START_TIMEOUT = 180.0
#: After /health answers, the time a service is left alone before its idle size is read.
IDLE_WAIT_S = 10.0
TARGETS_MIB = {"tiering": 400}
HEADERS = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]
#: What the load causes downstream, counted from these topics' end offsets.
CAUSED = (CRM_CUSTOMERS, CRM_TIER_CHANGES, CRM_CUSTOMER_TIERS, CRM_COMPLAINTS, CRM_NOTIFICATIONS)


def environment(service: str, run: str, smtp_port: int, closed_port: int) -> dict[str, str]:
    prefix = service.upper()
    env = {f"{prefix}_KAFKA_GROUP_ID": f"bench-memory-{run}-{service}",
           f"{prefix}_MONGODB_DATABASE": f"bench_memory_{run}_{service}", "LOG_LEVEL": "INFO"}
    if service == "notifications":
        env.update({
            "NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
            "NOTIFICATIONS_SMTP_PORT": str(smtp_port),
            # Messages go out as they are decided, whatever the hour, and no holiday greeting joins in
            # on some days and not others: runs stay comparable.
            "NOTIFICATIONS_QUIET_START": "00:00",
            "NOTIFICATIONS_QUIET_END": "00:00",
            "NOTIFICATIONS_HOLIDAY_SELECTION": json.dumps({"CN": {}, "US": {}, "GB": {}}),
            "NOTIFICATIONS_EXTRA_HOLIDAYS": "[]",
            # Nothing listens there: an SMS must never reach a provider of another local run.
            "NOTIFICATIONS_SMS_URL": f"http://127.0.0.1:{closed_port}/sms",
            "NOTIFICATIONS_WEBHOOK_URL": "",
        })
    return env


def load(run: str, customers: int, purchases: int, complaints: int) -> Iterator[CloudEvent]:
    """Registrations a year ago, purchases over the year since, complaints in the last hour."""
    rng = random.Random(11)
    now = datetime.now(UTC).replace(microsecond=0)
    ids = [f"M{i:06d}-{run}" for i in range(customers)]
    for i, cid in enumerate(ids):
        yield CustomerRegistered(id=str(uuid.uuid4()), source="bench", subject=cid, time=now - timedelta(days=365),
                                 data=CustomerProfileData(
                                     name=f"Customer {i}", email=f"m{i}-{run}@example.com",
                                     birthday=date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 50)),
                                     country="CN", locale="zh-CN" if i % 4 else "en-US", timezone="Asia/Shanghai",
                                     preferred_channel="email",
                                     consents=Consents(email=True, care_messages=True, marketing=False)))
    for i in range(purchases):
        cid = rng.choice(ids)
        yield PurchaseCompleted(id=str(uuid.uuid4()), source="bench", subject=cid,
                                time=now - timedelta(days=360) + timedelta(seconds=i * 360 * 86400 // purchases),
                                data=PurchaseCompletedData(
                                    order_id=f"MO{i}-{run}", total_amount=Decimal(rng.randrange(500, 500_000)) / 100,
                                    currency=rng.choice(("CNY", "CNY", "CNY", "USD", "EUR")), channel="online"))
    for i in range(complaints):
        cid = rng.choice(ids)
        yield ComplaintSubmitted(id=str(uuid.uuid4()), source="bench", subject=cid,
                                 time=now - timedelta(minutes=rng.randrange(1, 60)),
                                 data=ComplaintSubmittedData(
                                     complaint_id=f"MK{i}-{run}", channel=rng.choice(("phone", "email", "app")),
                                     category=rng.choice(("delivery", "billing", "product_quality")),
                                     severity=rng.choice(("low", "normal", "normal", "high")),
                                     subject="About a recent order"))


async def publish(bootstrap: str, events: Iterator[CloudEvent]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20)
    await producer.start()
    count = 0
    try:
        pending = []
        for event in events:
            pending.append(await producer.send(event.topic, serialize_event(event), key=event.subject.encode(),
                                               headers=HEADERS))
            count += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count


async def subscriptions(process: ServiceProcess) -> list[str]:
    """The topics a running service consumes, as its AsyncAPI document announces them."""
    async with httpx.AsyncClient(timeout=30) as client:
        doc = (await client.get(f"{process.url}/asyncapi.json")).json()
    return sorted({doc["channels"][unquote(op["channel"]["$ref"].rsplit("/", 1)[-1])]["address"]
                   for op in doc["operations"].values() if op["action"] == "receive"})


async def handled(admin: AIOKafkaAdminClient, groups: dict[tuple[str, str], str]) -> dict[str, int]:
    """Records each service's groups have committed, over the topics it reads."""
    done: dict[str, int] = {}
    for (service, _), group in groups.items():
        committed = await admin.list_consumer_group_offsets(group)
        done[service] = done.get(service, 0) + sum(meta.offset for meta in committed.values() if meta.offset > 0)
    return done


async def behind(admin: AIOKafkaAdminClient, groups: dict[tuple[str, str], str],
                 ends: dict[TopicPartition, int]) -> dict[str, int]:
    """Records each service has still to handle, over the topics it reads."""
    lag: dict[str, int] = {}
    for (service, topic), group in groups.items():
        committed = await admin.list_consumer_group_offsets(group)
        for tp, end in ends.items():
            if tp.topic == topic:
                done = committed.get(tp)
                lag[service] = lag.get(service, 0) + max(0, end - (done.offset if done else 0))
    return lag


async def settle(bootstrap: str, admin: AIOKafkaAdminClient, groups: dict[tuple[str, str], str],
                 processes: dict[str, ServiceProcess], timeout: float) -> tuple[bool, dict[str, int]]:
    """Wait until every service has handled everything on its topics and nothing new appears: what
    one service publishes is work for another, so the ends are read again after each catch-up."""
    topics = sorted({topic for _, topic in groups})
    deadline = time.monotonic() + timeout
    next_report = time.monotonic() + 30
    previous: dict[TopicPartition, int] | None = None
    lag: dict[str, int] = {}
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.process is None or process.process.poll() is not None:
                raise RuntimeError(f"{name} exited during the load:\n{process.log_tail()}")
        ends = {tp: end for topic in topics for tp, end in (await offsets(bootstrap, topic)).items()}
        lag = await behind(admin, groups, ends)
        if not any(lag.values()):
            if ends == previous:
                return True, lag
            previous = ends
            await asyncio.sleep(3)  # time for what the last records caused to be published
            continue
        previous = None
        if time.monotonic() >= next_report:
            print("still to handle: " + ", ".join(f"{s} {n:,}" for s, n in lag.items()), file=sys.stderr, flush=True)
            next_report = time.monotonic() + 30
        await asyncio.sleep(2)
    return False, lag


async def run(opts: dict[str, int]) -> Section:
    run_id = uuid.uuid4().hex[:8]
    base = ServiceSettings(service_name="bench")
    bootstrap = base.kafka_bootstrap_servers
    await ensure_topics(base)
    smtp_port, closed_port = free_port(), free_port()
    sink = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{smtp_port}",
                             "-c", "aiosmtpd.handlers.Sink"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log_dir = RUN_DIR / "bench" / f"memory-{run_id}"
    processes = {s: ServiceProcess(s, environment(s, run_id, smtp_port, closed_port), log_dir) for s in SERVICES}
    admin = AIOKafkaAdminClient(**admin_kwargs(base))
    await admin.start()
    try:
        await asyncio.to_thread(wait_for_port, smtp_port)
        every_topic = [spec.name for spec in CATALOGUE]
        # Fresh groups start at the end of the shared topics, not at earlier runs' history; every
        # topic, since which ones a service reads is known only once it runs.
        await asyncio.gather(*(
            skip_backlog(ServiceSettings(service_name=s, kafka_group_id=f"bench-memory-{run_id}-{s}"), every_topic)
            for s in SERVICES))
        started = await asyncio.gather(*(asyncio.to_thread(p.start, START_TIMEOUT) for p in processes.values()),
                                       return_exceptions=True)
        failed = [error for error in started if isinstance(error, BaseException)]
        if failed:
            raise failed[0]
        await asyncio.sleep(IDLE_WAIT_S)
        idle = {s: proc_status(p.process.pid) for s, p in processes.items()}  # type: ignore[union-attr]
        groups = {}
        for s, p in processes.items():
            settings = ServiceSettings(service_name=s, kafka_group_id=f"bench-memory-{run_id}-{s}")
            for topic in await subscriptions(p):
                groups[s, topic] = settings.group_for(topic)
        caused_from = {t: sum((await offsets(bootstrap, t)).values()) for t in CAUSED}
        handled_from = await handled(admin, groups)
        loaded = time.perf_counter()
        published = await publish(bootstrap, load(run_id, opts["customers"], opts["purchases"], opts["complaints"]))
        published_s = time.perf_counter() - loaded
        settled, lag = await settle(bootstrap, admin, groups, processes, opts["settle_timeout"])
        settle_s = time.perf_counter() - loaded
        peak = {s: proc_status(p.process.pid) for s, p in processes.items()}  # type: ignore[union-attr]
        handled_to = await handled(admin, groups)
        caused = {t: sum((await offsets(bootstrap, t)).values()) - caused_from[t] for t in CAUSED}
    finally:
        await admin.close()
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in processes.values()))
        sink.terminate()
        sink.wait(10)

    section = Section("memory", "Peak memory of each service", (
        f"The four services as separate processes; load: {opts['customers']:,} registrations, "
        f"{opts['purchases']:,} purchases and {opts['complaints']:,} complaints ({published:,} events, published in "
        f"{published_s:.0f} s), and everything they caused, "
        + (f"handled by every service {settle_s:.0f} s after the first was published."
           if settled else f"**not** all handled after {settle_s:.0f} s (still to handle: "
           + ", ".join(f"{s} {n:,}" for s, n in lag.items() if n) + ").")))
    for s in SERVICES:
        target = TARGETS_MIB.get(s)
        section.add(f"{s}: peak resident set (VmHWM) under the load", f"{peak[s]['VmHWM']:,.0f} MiB",
                    f"idle resident set {IDLE_WAIT_S:.0f} s after start: {idle[s]['VmRSS']:,.0f} MiB",
                    ratio(peak[s]["VmHWM"], idle[s]["VmRSS"]),
                    verdict(peak[s]["VmHWM"] < target, f"< {target} MiB") if target else "—")
    counts = []
    for s in SERVICES:
        done = handled_to[s] - handled_from[s]
        # A rate means something only for a service that was busy the whole time.
        counts.append(f"{s} {done:,}" + (f" ({done / settle_s:,.1f}/s, {lag[s]:,} left)" if lag.get(s) else ""))
    section.notes.append(f"Records each service handled, over all the topics it reads: {', '.join(counts)}.")
    section.notes.append("What the load caused, in records: "
                         + ", ".join(f"{t} {n:,}" for t, n in caused.items()) + ".")
    section.notes.append("MiB of resident memory as the kernel counts it (/proc/<pid>/status): the whole "
                         "interpreter, libraries included; the resident set at the end of the run was "
                         + ", ".join(f"{s} {peak[s]['VmRSS']:,.0f} MiB" for s in SERVICES) + ".")
    return section


def main(argv: list[str] | None = None) -> None:
    parser = arguments(argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__,
                                               formatter_class=argparse.RawDescriptionHelpFormatter))
    for name in FULL:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int)
    args = parser.parse_args(argv)
    opts = {**(QUICK if args.quick else FULL), **{k: v for k, v in vars(args).items() if k in FULL and v is not None}}
    emit(asyncio.run(run(opts)), args.json)


if __name__ == "__main__":
    main()
