"""Each service alone, with 10,000 and with 100,000 customers already stored.

The stored customers are the whole-system run's own documents (as each service's repository wrote
them, in its per-customer collection) copied under other customer ids, inserted in bulk into a
database of the measurement's own. The input is what the whole-system run gave that service: its
topics from the start, read by fresh consumer groups, capped to a fixed number of records that keeps
the topics' mix. Timed from the first commit to the last, so that the start and the joins are left out.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from aiokafka import TopicPartition
from pymongo import AsyncMongoClient

from bench._report import Section, ratio, verdict
from bench._stack import SERVICES, Lag, Stack, groups
from shared import watermark

#: The collection whose documents are a service's stored customers.
CUSTOMER_COLLECTION = {"customer": "customers", "tiering": "customers", "complaints": "tiers",
                       "notifications": "customers"}
#: Collections copied as they are: the state a service keeps beside its customers. Without tiering's
#: cut-offs, the stored customers' classes would all be provisional, and the refresh at start would
#: re-evaluate every one of them within the timed window: not the steady state being measured.
#: Every service's event-time watermark too: without it a service would judge the copies as of today
#: until its first record (see ``shared.watermark``).
AS_IS = {service: (watermark.COLLECTION,) for service in CUSTOMER_COLLECTION} | {
    "tiering": ("policies", "cutoffs", watermark.COLLECTION)}
EVENTS = 6_000
QUICK_EVENTS = 1_000
#: A service that does work of its own at start logs this when it is done: its window opens then, so
#: that what it measures is the steady state (tiering re-ranks the whole population at every start).
STARTED = {"tiering": '"population_refreshed"'}
MIN_RATE = 1_000.0
FLAT = 0.25
CHUNK = 2_000
COPY_MARK = ":c"


def _owner(doc: Mapping[str, Any]) -> str:
    """The customer a document is about: its ``customer_id``, else its ``_id`` up to ``#`` (tiering's
    revisions)."""
    return str(doc.get("customer_id") or str(doc["_id"]).split("#")[0])


def copies(docs: list[dict[str, Any]], customers: int) -> Iterator[dict[str, Any]]:
    """Copies of ``docs`` under customer ids ``<id>:c<n>`` (valid ids on the contract) until
    ``customers`` customers are stored."""
    owners = sorted({_owner(d) for d in docs})
    by_owner: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_owner.setdefault(_owner(doc), []).append(doc)
    made = 0
    for copy in range(1, math.ceil(customers / max(len(owners), 1)) + 2):
        for owner in owners:
            if made >= customers:
                return
            made += 1
            new = f"{owner}{COPY_MARK}{copy}"
            for doc in by_owner[owner]:
                clone = dict(doc)
                clone["_id"] = str(doc["_id"]).replace(owner, new, 1)
                if "customer_id" in doc:
                    clone["customer_id"] = new
                yield clone


async def insert_chunked(target: Any, docs: Iterable[dict[str, Any]]) -> None:
    """``docs`` inserted into the ``target`` collection a chunk at a time."""
    chunk: list[dict[str, Any]] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) >= CHUNK:
            await target.insert_many(chunk, ordered=False)
            chunk = []
    if chunk:
        await target.insert_many(chunk, ordered=False)


async def seed(mongodb_url: str, service: str, database: str, customers: int) -> float:
    """``customers`` stored customers in ``database``; seconds spent inserting."""
    collection = CUSTOMER_COLLECTION[service]
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    try:
        source = await client[f"carecrm_{service}"][collection].find({}).to_list(None)
        target = client[database][collection]
        await target.drop()
        started = time.monotonic()
        await insert_chunked(target, copies(source, customers))
        for name in AS_IS.get(service, ()):
            docs = await client[f"carecrm_{service}"][name].find({}).to_list(None)
            await client[database][name].drop()
            if docs:
                await client[database][name].insert_many(docs)
        return time.monotonic() - started
    finally:
        await client.close()


async def targets(lag: Lag, events: int) -> dict[TopicPartition, int]:
    """Where each partition of the service's topics must be committed to for ``events`` records: the
    same share of every partition, so that the mix of topics stays the whole-system run's."""
    tps = await lag.partitions(lag.watched.values())
    ends = await lag.reader.end_offsets(tps)
    share = min(1.0, events / max(sum(ends.values()), 1))
    return {tp: math.ceil(end * share) for tp, end in ends.items() if end}


async def committed(lag: Lag, goal: Mapping[TopicPartition, int]) -> int:
    """Records of ``goal`` the service's groups have committed."""
    found = await asyncio.gather(*(lag.admin.list_consumer_group_offsets(g) for g in lag.watched))
    done = 0
    for (_, topic), offsets in zip(lag.watched.items(), found, strict=True):
        for tp, end in goal.items():
            if tp.topic == topic and tp in offsets and offsets[tp].offset > 0:
                done += min(offsets[tp].offset, end)
    return done


async def timed(stack: Stack, service: str, label: str, goal_events: int, timeout: float) -> tuple[int, float]:
    """Run ``service`` alone on fresh groups and database; (records, seconds from first to last commit)."""
    group_id = f"bench-{label}"
    async with Lag(stack.bootstrap, groups(service, group_id)) as lag:
        goal = await targets(lag, goal_events)
        total = sum(goal.values())
        process = await asyncio.to_thread(stack.start, service, label, **{
            f"{service.upper()}_KAFKA_GROUP_ID": group_id, f"{service.upper()}_MONGODB_DATABASE": f"bench_{label}"})
        marker = STARTED.get(service)
        try:
            first: tuple[float, int] | None = None
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                done = await committed(lag, goal)
                now = time.monotonic()
                if marker is not None and marker in process.log_text():
                    marker = None
                if first is None and done and marker is None:
                    first = (now, done)
                if done >= total and first is not None:
                    return total - first[1], now - first[0]
                await asyncio.sleep(0.25)
            raise TimeoutError(f"{service} committed {done:,} of {total:,} records in {timeout:.0f} s")
        finally:
            await asyncio.to_thread(stack.stop, label)


async def measure(stack: Stack, sizes: list[int], events: int, services: list[str]
                  ) -> dict[str, dict[int, tuple[int, float, float]]]:
    """service -> stored customers -> (records, seconds, seconds seeding)."""
    found: dict[str, dict[int, tuple[int, float, float]]] = {}
    for service in services:
        for size in sizes:
            label = f"{service}-{size}"
            seeded = await seed(stack.mongodb_url, service, f"bench_{label}", size)
            print(f"{service}: {size:,} customers stored in {seeded:.0f} s; timing {events:,} records", flush=True)
            try:
                records, seconds = await timed(stack, service, label, events, timeout=max(600.0, events / 20))
            except (TimeoutError, RuntimeError) as exc:
                print(f"{service} at {size:,}: {exc}", flush=True)
                records, seconds = 0, math.inf
            found.setdefault(service, {})[size] = (records, seconds, seeded)
            print(f"{service} at {size:,}: {records:,} records in {seconds:.1f} s", flush=True)
    return found


def per_service(stack: Stack, section: Section, sizes: list[int], *, quick: bool,
                services: list[str] | None = None) -> None:
    services = services or list(SERVICES)
    events = QUICK_EVENTS if quick else EVENTS
    found = asyncio.run(measure(stack, sizes, events, services))
    small, large = sizes[0], sizes[-1]
    for service in services:
        rates = {n: (r / s if s and not math.isinf(s) else 0.0) for n, (r, s, _) in found[service].items()}
        records = found[service][large][0]
        met = rates[large] >= MIN_RATE and rates[small] > 0 and rates[large] >= (1 - FLAT) * rates[small]
        section.add(f"{service} alone, {records:,} of its UCI records, {large:,} customers stored",
                    f"{rates[large]:,.0f} events/s", f"the same with {small:,} stored: {rates[small]:,.0f} events/s",
                    ratio(rates[large], rates[small]),
                    verdict(met, f"≥ {MIN_RATE:,.0f}/s at {large:,}, within {FLAT:.0%} of {small:,}"))
    section.notes.append(
        "Per service: the stored customers are copies, under other ids, of the documents the service wrote "
        "in its customer collection during the whole-system run (" + ", ".join(
            f"{s} `{c}`" for s, c in CUSTOMER_COLLECTION.items()) + "), inserted in bulk; the input is the first "
        "share of every partition of the topics it read in that run, read by fresh groups; timed from the "
        "first commit to the last (tiering: from its first commit after the population refresh every start "
        "runs). Seeding took " + ", ".join(
            f"{s} {n:,}: {found[s][n][2]:.0f} s" for s in services for n in sizes) + ".")
