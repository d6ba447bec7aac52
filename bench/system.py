"""Whole system: the UCI Online Retail history (every customer registered before their first invoice,
then the purchases and cancellations in time order, mapped to the contract as ``deploy/demo.py``
maps them) published to the four services running as processes, on a Kafka and a FerretDB of the
benchmark's own; the time from the last publish until every consumer group of every service has
committed everything, beside a bare read of every record the system then holds, in the same run.
Then each service alone, with 10,000 and with 100,000 customers already stored
(``bench/_per_service.py``).

    python -m bench.system                     # the whole history, then each service at 10 k / 100 k
    python -m bench.system --quick             # the first 2,000 invoices; 1 k / 10 k stored customers
    python -m bench.system --no-per-service    # only the whole-system replay

The services run on the event-time clock (as ``make demo`` runs them), so that 2010-2011 data is
judged as of its own time. Service logs are kept in ``.run/bench-system/`` after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from bench._cpu import cpu_by_role
from bench._infra import private_servers
from bench._report import Section, arguments, emit, ratio, verdict
from bench._stack import SERVICES, Drain, Lag, Stack, bare_read, drained, fresh_logs, groups, topic_sizes
from deploy.demo import DATA, synthetic_events
from deploy.local.infra import RUN_DIR
from deploy.replay import load
from shared.contract import CloudEvent, serialize_event
from shared.kafka import CLOUDEVENTS_CONTENT_TYPE, PRODUCER_OPTIONS, ensure_topics
from shared.settings import ServiceSettings

SEED = 352  # make demo's seed: the same customers consent to care messages
QUICK_INVOICES = 2_000
#: The issue's targets: caught up within this many seconds of the last publish, and within this
#: many times a bare read of every record produced.
LIMIT_S = 120.0
BARE_FACTOR = 30.0
KEPT = ("customer.registered", "order.purchase.completed", "order.purchase.refunded")
HEADERS = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]
LOGS = RUN_DIR / "bench-system"


def uci_events(limit: int | None) -> tuple[list[CloudEvent], Counter[str]]:
    """The demo's mapping of the invoices, without its synthetic complaints and interactions: the
    issue's replay is the customers, purchases and cancellations alone."""
    rejected: Counter[str] = Counter()
    events = [e for e in synthetic_events(load(DATA, "online-retail", limit), SEED, rejected) if e.type in KEPT]
    return events, rejected


async def publish(bootstrap: str, events: list[CloudEvent]) -> tuple[float, float]:
    """Publish in order with the services' own producer options; (seconds, monotonic time of the
    last acknowledgement). Serialised beforehand, so that only the sending is timed."""
    records = [(e.topic, serialize_event(e), e.subject.encode()) for e in events]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **{**PRODUCER_OPTIONS, "linger_ms": 20},
                                max_batch_size=256 * 1024)
    await producer.start()
    try:
        started = time.monotonic()
        pending = []
        for topic, value, key in records:
            pending.append(await producer.send(topic, value, key=key, headers=HEADERS))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        last = time.monotonic()
        return last - started, last
    finally:
        await producer.stop()


async def joined(lag: Lag, timeout: float = 120.0) -> None:
    """Wait until every service group exists on the broker, so that the drain does not time joins."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = {g[0] for g in await lag.admin.list_consumer_groups()}
        if set(lag.watched) <= listed:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"groups never joined: {sorted(set(lag.watched) - listed)}")


async def classified(stack: Stack) -> int:
    """Customers tiering has classified, -1 if it does not answer (it may still be catching up)."""
    try:
        async with httpx.AsyncClient(headers={"X-API-Key": stack.key}, timeout=120) as client:
            response = await client.get(f"{stack.processes['tiering'].url}/reports/segments")
    except httpx.HTTPError:
        return -1
    return int(response.json().get("customers", -1)) if response.status_code == 200 else -1


@dataclass(frozen=True)
class Replayed:
    published: float
    drain: Drain
    records: int
    bare: float
    classified: int
    sizes: dict[str, int]
    cpu: Counter[str]


def _cpu(stack: Stack) -> Counter[str]:
    return cpu_by_role(stack.home, stack.mongodb_url, {name: p.process.pid for name, p in stack.processes.items() if p.process})


async def run_through(stack: Stack, events: list[CloudEvent], timeout: float) -> tuple[float, Drain, Counter[str]]:
    """The four services started, ``events`` published once every group has joined, and the time
    until every group has caught up: (seconds publishing, how the groups drained, CPU seconds each
    process spent from the first publish until then)."""
    await ensure_topics(ServiceSettings(service_name="bench", kafka_bootstrap_servers=stack.bootstrap))
    for name in SERVICES:
        stack.start(name)
    watched = {g: t for name in SERVICES for g, t in groups(name).items()}
    async with Lag(stack.bootstrap, watched) as lag:
        await joined(lag)
        before = _cpu(stack)
        published, last = await publish(stack.bootstrap, events)
        print(f"published {len(events):,} events in {published:.1f} s; waiting for every group", flush=True)
        drain = await drained(lag, last, timeout=timeout)
        used = _cpu(stack)
        used.subtract(before)
        return published, drain, used


async def whole_system(stack: Stack, events: list[CloudEvent], timeout: float) -> Replayed:
    published, drain, cpu = await run_through(stack, events, timeout)
    # Printed at once: what follows (the bare read, tiering's report) must not cost the figure.
    print(f"caught up: {'no' if drain.seconds is None else f'{drain.seconds:.1f} s'}; lag left {drain.left}",
          flush=True)
    records, bare = await bare_read(stack.bootstrap)
    sizes = await topic_sizes(stack.bootstrap)
    customers = await classified(stack)
    for name in SERVICES:
        stack.stop(name)
    return Replayed(published, drain, records, bare, customers, sizes, cpu)


def replay_rows(section: Section, events: list[CloudEvent], rejected: Counter[str], found: Replayed,
                timeout: float) -> None:
    counts = Counter(e.type for e in events)
    drain, published, bare, records = found.drain, found.published, found.bare, found.records
    registrations = counts["customer.registered"]
    section.add(f"publish {registrations:,} registrations and {len(events) - registrations:,} purchases and "
                "cancellations", f"{published:.1f} s ({len(events) / published:,.0f} events/s)")
    bare_text = f"bare read of all {records:,} records the system holds: {bare:.1f} s"
    if drain.seconds is None:
        left = sum(drain.left.values())
        section.add("every group of every service caught up, from the last publish",
                    f"not within {timeout:.0f} s ({left:,} records left)", bare_text, "—",
                    verdict(False, f"≤ {LIMIT_S:.0f} s and ≤ {BARE_FACTOR:.0f}× the bare read"))
    else:
        seconds = drain.seconds
        section.add("every group of every service caught up, from the last publish", f"{seconds:.1f} s", bare_text,
                    ratio(seconds, bare, 1),
                    verdict(seconds <= LIMIT_S and seconds <= BARE_FACTOR * bare,
                            f"≤ {LIMIT_S:.0f} s and ≤ {BARE_FACTOR:.0f}× the bare read"))
    section.add("customers tiering classified (its /reports/segments)", f"{found.classified:,} of {registrations:,}" if found.classified >= 0 else "no answer in 120 s")
    if drain.finished:
        order = sorted(drain.finished.items(), key=lambda kv: kv[1])
        section.notes.append("Each group at lag 0 for good, seconds after the last publish: " + ", ".join(
            f"`{g}` {t:.1f}" for g, t in order) + f"; the last: `{order[-1][0]}`.")
    if found.cpu:
        wall = published + (drain.seconds if drain.seconds is not None else timeout)
        total = sum(found.cpu.values())
        section.notes.append(
            f"CPU seconds from the first publish until every group caught up ({wall:.0f} s of wall time, "
            f"{2 * wall:.0f} CPU-s on two cores): " + ", ".join(
                f"{role} {seconds:.0f}" for role, seconds in found.cpu.most_common()) + f"; {total:.0f} in all.")
    step = max(1, len(drain.series) // 12)
    section.notes.append("Records not yet committed, all groups, over time (s after the last publish: records): "
                         + ", ".join(f"{t:.0f}: {n:,}" for t, n in drain.series[::step]) + ".")
    section.notes.append("Records each topic holds at the end (inputs and what the services produced): " + ", ".join(
        f"`{t}` {n:,}" for t, n in found.sizes.items()) + ".")
    if rejected:
        section.notes.append(f"{sum(rejected.values())} invoices break the contract (amount ≤ 0) and are not published.")


def main(argv: list[str] | None = None) -> None:
    parser = arguments(argparse.ArgumentParser(prog="python -m bench.system", description=__doc__,
                                               formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--invoices", type=int, help="replay only the first N invoices (in time order)")
    parser.add_argument("--no-per-service", action="store_true", help="only the whole-system replay")
    parser.add_argument("--drain-timeout", type=float, default=LIMIT_S * 5, metavar="S",
                        help="how long to wait for the groups to catch up before calling it missed")
    parser.add_argument("--customers", metavar="N,N", help="per service: the stored populations (default 10000,100000)")
    parser.add_argument("--services", metavar="NAME,NAME", help="per service: only these services (default all)")
    args = parser.parse_args(argv)
    limit = args.invoices or (QUICK_INVOICES if args.quick else None)
    events, rejected = uci_events(limit)
    scope = "the whole UCI history" if limit is None else f"the first {limit:,} invoices of the UCI history"
    section = Section("system", "Whole system", (
        f"{scope} ({len(events):,} events) published to the four services, each its own process on the "
        "event-time clock, on a Kafka and a FerretDB (on PostgreSQL) of the benchmark's own; lag is "
        "polled every 0.5 s, caught up means every group at lag 0 for 3 s; the bare read is one aiokafka "
        "consumer without a group reading every record of every topic, in the same run."))
    with private_servers("bench-system-") as (bootstrap, mongodb_url, home):
        stack = Stack(bootstrap, mongodb_url, home, fresh_logs(LOGS))
        try:
            found = asyncio.run(whole_system(stack, events, args.drain_timeout))
            replay_rows(section, events, rejected, found, args.drain_timeout)
            if not args.no_per_service:
                from bench._per_service import per_service  # noqa: PLC0415 - only when asked for

                sizes = [int(n) for n in args.customers.split(",")] if args.customers else (
                    [1_000, 10_000] if args.quick else [10_000, 100_000])
                per_service(stack, section, sizes, quick=args.quick,
                            services=args.services.split(",") if args.services else None)
        finally:
            stack.close()
    section.notes.append(f"Service logs of the run: `{Path(LOGS).relative_to(RUN_DIR.parent)}/`.")
    emit(section, args.json)


if __name__ == "__main__":
    main()
