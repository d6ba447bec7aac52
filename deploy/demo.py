"""``make demo``: the whole system on the real Online Retail data.

With the services running (``make demo`` starts them on the event-time clock, so 2010-2011 data is
judged as of 2010-2011), this registers every customer of the dataset, replays their purchases and
cancellations in event-time order, adds a seeded share of complaints, follow-up calls and survey
answers so that every service has work, plays a care team that handles the complaints, waits for the
system to settle, then prints a summary and writes an HTML report to ``.run/report.html``.

How the data maps to the event contract (see ``deploy/replay.py`` and ``data/README.md``):
- a purchase invoice is ``order.purchase.completed`` (``order_id`` = invoice number, GBP, channel
  ``online``, UK local time);
- a cancellation (``C...`` invoice) is ``order.purchase.refunded`` without ``order_id``, since the data
  does not name the cancelled invoice: it lowers the customer's spend, never below zero;
- an invoice summing to zero or less breaks the contract (amounts are > 0): it is rejected and
  counted (the summary and the report give the count and the reason), never published.

Contacts are synthetic (the dataset has none): a seeded 70 % of customers get an ``example.com``
address and consent to care messages, so e-mails land in the local SMTP sink (``.run/outbox/mail``).

The care team, and the times of its actions. The complaints service stamps every action taken
through its HTTP API with its clock, and on the event-time clock that is the newest event time it
has seen; its scheduler breaches a target as that watermark passes the due time. Acting after the
replay would stamp every acknowledgement December 2011 and every complaint would miss its targets.
So the team acts during the replay: ``agent_plan`` gives each complaint, from the seed, its steps
and their event times (a share is never handled; acknowledgements and resolutions come some within
and some beyond the targets; complex cases get progress updates; some customers answer a survey).
When the replay reaches a step, the demo publishes the contact that goes with it to
``crm.interactions.v1``, as a CRM would record it (the agent's call acknowledging the complaint, the
e-mail with an update or the resolution, the customer's survey answer naming the complaint), waits
until the complaints service's consumer group has committed past that record, so that its clock
stands exactly at the step's time (nothing later has been published yet), and only then calls the
HTTP API: the transitions to acknowledged and investigating, a comment, the transition to resolved,
each in the agent's name. A survey answer needs no call: the service takes it as feedback, closes
the complaint on a good score and reopens it on a low one (the plan then resolves it again).
Nothing the complaints service publishes itself is imitated. Steps after the last replayed event
are dropped, so the services' clocks end where the data ends. Run on services that already handled
the plan (a second ``make demo`` without ``make down``), the actions find their complaints past
that step and are counted as skipped. Each step waits for the complaints service, whose writes queue behind the
other services' in the shared store, so the care team makes a run much longer than the replay
alone; ``--no-care-team`` leaves it out (and every complaint breaches).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import html
import json
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError
from tqdm import tqdm

from deploy.local import infra
from deploy.replay import LONDON, NAMESPACE, SOURCE, Row, _reason, event_id, load, to_event
from services.complaints.settings import ComplaintsSettings
from shared.contract import CloudEvent, serialize_event
from shared.contract.events import (
    ComplaintSubmitted,
    ComplaintSubmittedData,
    Consents,
    CustomerProfileData,
    CustomerRegistered,
    InteractionData,
    InteractionRecorded,
)
from shared.contract.topics import CRM_COMPLAINTS, CRM_INTERACTIONS, CRM_TIER_CHANGES
from shared.kafka import CLOUDEVENTS_CONTENT_TYPE, admin_kwargs
from shared.settings import ServiceSettings

RUN = infra.RUN_DIR
DATA = infra.ROOT / "data" / "online_retail_invoices.csv"
PORTS = {"customer": 8001, "tiering": 8002, "complaints": 8003, "notifications": 8004}
ATTRIBUTION = ('UCI Machine Learning Repository dataset #352 "Online Retail" (Dr Daqing Chen, London South Bank '
               "University), CC BY 4.0; Chen, Sain & Guo (2012), doi:10.1057/dbm.2012.17")
CATEGORIES = ["product_quality", "delivery", "billing", "service_attitude", "price", "other"]
MAPPING_RULES = (
    "A purchase invoice is order.purchase.completed (order_id = invoice number, GBP, channel online, "
    "UK local time).",
    "A cancellation (C... invoice) is order.purchase.refunded without order_id, since the data does not name "
    "the cancelled invoice; it lowers the customer's spend, never below zero.",
    "An invoice summing to zero or less breaks the contract (amounts are > 0): it is rejected and counted, "
    "never published.",
)
LIFECYCLE_STAGES = ("prospect", "new", "repeat", "loyal", "at_risk", "churned", "reactivated")
DIRECTIONS = ("initial", "upgrade", "downgrade", "lateral")
HEADERS = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]

# The care team's habits, as (share, from hours, to hours) bands. The targets they meet or miss are
# the complaints service's defaults: first response within 2 h (p1), 4 h (preferred tiers) or 24 h;
# resolution within 1, 2, 3 or 7 working days; progress updates of complex cases every 1 or 2
# working days.
AGENTS = ("care.ana", "care.ben", "care.chen", "care.dev", "care.eve", "care.fei")
UNHANDLED = 0.08  # complaints nobody picks up: they breach and escalate
ACK_DELAY = ((0.70, 0.2, 3.5), (0.18, 3.5, 20.0), (0.12, 26.0, 96.0))
RESOLVED = 0.88  # of the acknowledged; the others stay open
RESOLVE_DELAY = ((0.50, 2.0, 30.0), (0.30, 30.0, 96.0), (0.20, 120.0, 400.0))
UPDATE_EVERY = (20.0, 40.0)
MAX_UPDATES = 6
SURVEYED = 0.6  # of the resolved
SURVEY_AFTER = (6.0, 96.0)
SCORES = ((5, 40), (4, 30), (3, 14), (2, 10), (1, 6))
LOW_SCORE = 2  # the complaints service reopens on a score this low (its Rules.low_score)
RERESOLVE_AFTER = (24.0, 96.0)
ROOT_CAUSES = {"product_quality": "product_defect", "delivery": "logistics", "billing": "billing_error",
               "service_attitude": "staff_behaviour", "price": "pricing", "other": "customer_misunderstanding"}


# --- The replayed data ------------------------------------------------------------------------------

def synthetic_events(rows: list[Row], seed: int, rejected: Counter[str] | None = None) -> list[CloudEvent]:
    """Registrations, the replayed purchases, and seeded complaints and interactions, in time order.

    Rows that break the contract are left out and counted by reason in ``rejected``."""
    rng = random.Random(seed)
    events: list[CloudEvent] = []
    seen: set[str] = set()
    for row in rows:
        if row.customer_id not in seen:
            seen.add(row.customer_id)
            events.append(_registration(row, rng))
        try:
            events.append(to_event(row))
        except ValidationError as exc:
            if rejected is not None:
                rejected[_reason(exc)] += 1
            continue
        if not row.refund and rng.random() < 0.03:
            events.append(_complaint(row, rng))
        if rng.random() < 0.04:
            events.append(_interaction(row, rng))
    events.sort(key=lambda e: e.time)
    return events


def _registration(row: Row, rng: random.Random) -> CustomerRegistered:
    contactable = rng.random() < 0.7
    birthday = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 50))
    return CustomerRegistered(
        id=event_id("registration", row.customer_id), source=SOURCE, subject=row.customer_id, time=row.time,
        data=CustomerProfileData(
            name=f"Customer {row.customer_id}",
            email=f"customer-{row.customer_id}@example.com" if contactable else None,
            birthday=birthday, country=row.country, locale="en-GB" if row.country == "GB" else "en-US",
            timezone="Europe/London", preferred_channel="email",
            consents=Consents(email=contactable, care_messages=contactable, marketing=False),
            tags=["online-retail"],
        ),
    )


def _complaint(row: Row, rng: random.Random) -> ComplaintSubmitted:
    when = row.time + timedelta(hours=rng.randrange(2, 72))
    return ComplaintSubmitted(
        id=str(uuid.uuid5(NAMESPACE, f"complaint:{row.order_id}")), source="demo/intake", subject=row.customer_id,
        time=when,
        data=ComplaintSubmittedData(
            complaint_id=f"CP-{row.order_id}", channel=rng.choice(["phone", "email", "online", "app"]),
            category=rng.choice(CATEGORIES), severity=rng.choices(["low", "normal", "high", "critical"],
                                                                  [3, 6, 2, 0.3])[0],
            complexity="complex" if rng.random() < 0.2 else "standard",
            subject=f"About order {row.order_id}", description="Generated for the demo.", order_id=row.order_id,
        ),
    )


def _interaction(row: Row, rng: random.Random) -> InteractionRecorded:
    kind = rng.choice(["call", "inquiry", "email", "visit", "survey_response"])
    return InteractionRecorded(
        id=str(uuid.uuid5(NAMESPACE, f"interaction:{row.order_id}")), source="demo/crm", subject=row.customer_id,
        time=row.time + timedelta(days=rng.randrange(1, 20)),
        data=InteractionData(interaction_id=f"IA-{row.order_id}", kind=kind, channel="phone",
                             direction="outbound" if kind == "call" else "inbound",
                             satisfaction=rng.randint(1, 5) if kind == "survey_response" else None),
    )


# --- The care team's plan (pure) --------------------------------------------------------------------

@dataclass(frozen=True)
class AgentAction:
    """One step of the care team on a complaint, at the event time it happens."""

    at: datetime
    kind: str  # acknowledge | update | resolve | survey
    complaint_id: str
    customer_id: str
    agent: str
    step: int
    score: int | None = None
    root_cause: str | None = None


def _band(rng: random.Random, bands: tuple[tuple[float, float, float], ...]) -> float:
    _share, low, high = rng.choices(bands, [b[0] for b in bands])[0]
    return rng.uniform(low, high)


def complaint_plan(complaint: ComplaintSubmitted, seed: int) -> list[AgentAction]:
    """The steps taken on one complaint, in time order; drawn from the seed and the complaint id only,
    so a complaint is handled alike whatever else is replayed."""
    complaint_id = complaint.data.complaint_id
    assert complaint_id is not None, "the demo's complaints name their id"
    rng = random.Random(f"{seed}/{complaint_id}")
    agent = rng.choice(AGENTS)
    steps: list[AgentAction] = []

    def add(kind: str, at: datetime, **extra: Any) -> None:
        steps.append(AgentAction(at.replace(microsecond=0), kind, complaint_id, complaint.subject, agent,
                                 len(steps), **extra))

    if rng.random() < UNHANDLED:
        return steps
    acknowledged = complaint.time + timedelta(hours=_band(rng, ACK_DELAY))
    add("acknowledge", acknowledged)
    if rng.random() >= RESOLVED:
        return steps
    resolved = acknowledged + timedelta(hours=_band(rng, RESOLVE_DELAY))
    if complaint.data.complexity == "complex":
        update = acknowledged + timedelta(hours=rng.uniform(*UPDATE_EVERY))
        for _ in range(MAX_UPDATES):
            if update >= resolved:
                break
            add("update", update)
            update += timedelta(hours=rng.uniform(*UPDATE_EVERY))
    cause = ROOT_CAUSES[complaint.data.category]
    add("resolve", resolved, root_cause=cause)
    if rng.random() < SURVEYED:
        answered = resolved + timedelta(hours=rng.uniform(*SURVEY_AFTER))
        score = rng.choices([s for s, _ in SCORES], [w for _, w in SCORES])[0]
        add("survey", answered, score=score)
        if score <= LOW_SCORE:
            add("resolve", answered + timedelta(hours=rng.uniform(*RERESOLVE_AFTER)), root_cause=cause)
    return steps


def agent_plan(complaints: Iterable[CloudEvent], seed: int, until: datetime | None = None) -> list[AgentAction]:
    """Every complaint's steps, in time order; steps after ``until`` are left out."""
    steps = [a for c in complaints if isinstance(c, ComplaintSubmitted) for a in complaint_plan(c, seed)
             if until is None or a.at <= until]
    return sorted(steps, key=lambda a: (a.at, a.complaint_id, a.step))


def contact(action: AgentAction) -> InteractionRecorded:
    """The interaction a CRM records with a step: the agent's call or e-mail, or the survey answer."""
    kind, channel, direction, summary = {
        "acknowledge": ("call", "phone", "outbound", f"{action.agent} called about complaint {action.complaint_id}"),
        "update": ("email", "email", "outbound", f"Progress update on complaint {action.complaint_id}"),
        "resolve": ("email", "email", "outbound", f"Resolution of complaint {action.complaint_id}"),
        "survey": ("survey_response", "online", "inbound", f"Survey on complaint {action.complaint_id}"),
    }[action.kind]
    interaction_id = f"{action.complaint_id}/{action.step}/{action.kind}"
    return InteractionRecorded(
        id=str(uuid.uuid5(NAMESPACE, f"care:{interaction_id}")), source="demo/crm", subject=action.customer_id,
        time=action.at,
        data=InteractionData(interaction_id=interaction_id, kind=kind, channel=channel, direction=direction,
                             summary=summary, satisfaction=action.score, complaint_id=action.complaint_id),
    )


def timeline(events: list[CloudEvent], plan: list[AgentAction]) -> Iterator[CloudEvent | AgentAction]:
    """Events and steps in time order; an event comes before a step at the same time."""
    merged = heapq.merge(((e.time, 0, i, e) for i, e in enumerate(events)),
                         ((a.at, 1, i, a) for i, a in enumerate(plan)))
    for *_, item in merged:
        yield item


# --- Playing the replay and the care team -----------------------------------------------------------

class CareTeam:
    """Takes each step once the complaints service's clock stands at its time (see the docstring)."""

    def __init__(self, client: httpx.AsyncClient, producer: AIOKafkaProducer, admin: AIOKafkaAdminClient,
                 group: str, timeout: float) -> None:
        self.client = client
        self.producer = producer
        self.admin = admin
        self.group = group
        self.timeout = timeout
        self.base = f"http://127.0.0.1:{PORTS['complaints']}/complaints"
        self.outcomes: Counter[str] = Counter()
        #: Wall time spent on steps by phase: the replay waits for the complaints service at each one.
        self.seconds: Counter[str] = Counter()
        #: Each complaint's status as last seen; surveys are the only change the team does not make itself.
        self.status: dict[str, str] = {}

    async def act(self, action: AgentAction) -> None:
        try:
            self.outcomes[await self._act(action)] += 1
        except httpx.HTTPStatusError as exc:
            self.outcomes[f"{action.kind}: refused ({exc.response.status_code})"] += 1

    async def _act(self, action: AgentAction) -> str:
        cid, actor = action.complaint_id, action.agent
        if action.kind == "survey":
            # Feedback is taken on resolved complaints only; an answer on anything else would be refused.
            before = await self._complaint(cid)
            if before is None or before["status"] not in ("resolved", "closed"):
                return "survey: not sent, complaint not resolved"
            if not await self._publish_and_wait(action):
                return "survey: complaints service behind"
            after = await self._complaint(cid)
            status = after["status"] if after else "gone"
            return "survey: low score, reopened" if status == "investigating" else f"survey: complaint {status}"
        if action.kind != "acknowledge" and self.status.get(cid) in (None, "received", "resolved", "closed"):
            # Nothing to do (never acknowledged, or resolved since): no contact to record either.
            return f"{action.kind}: skipped, {self.status.get(cid) or 'not acknowledged'}"
        if not await self._publish_and_wait(action):
            return f"{action.kind}: complaints service behind"
        complaint = await self._complaint(cid, wait=True)
        if complaint is None:
            return f"{action.kind}: complaint not found"
        status = complaint["status"]
        if action.kind == "acknowledge":
            if status != "received":
                return f"acknowledge: skipped, already {status}"
            await self._post(action, "transitions", {"to": "acknowledged", "actor": actor})
            await self._post(action, "transitions", {"to": "investigating", "actor": actor})
            return "acknowledged"
        if status in ("resolved", "closed", "received"):
            return f"{action.kind}: skipped, {status}"
        if action.kind == "update":
            await self._post(action, "comments", {"author": actor, "text": "We are working on it."})
            return "progress updates"
        if status != "investigating":
            await self._post(action, "transitions", {"to": "investigating", "actor": actor})
        await self._post(action, "transitions", {
            "to": "resolved", "actor": actor, "root_cause": action.root_cause,
            "resolution_summary": f"Resolved by {actor}: {str(action.root_cause).replace('_', ' ')}"})
        return "resolved again after a reopen" if complaint.get("reopen_count") else "resolved"

    async def _publish_and_wait(self, action: AgentAction) -> bool:
        started = time.monotonic()
        try:
            return await self._publish_and_wait_once(action)
        finally:
            self.seconds["clock"] += time.monotonic() - started

    async def _publish_and_wait_once(self, action: AgentAction) -> bool:
        event = contact(action)
        sent = await (await self.producer.send(event.topic, serialize_event(event), key=event.subject.encode(),
                                               headers=HEADERS))
        partition = TopicPartition(sent.topic, sent.partition)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            committed = await self.admin.list_consumer_group_offsets(self.group, partitions=[partition])
            done = committed.get(partition)
            if done is not None and done.offset > sent.offset:
                return True
            await asyncio.sleep(0.02)
        return False

    async def _complaint(self, complaint_id: str, *, wait: bool = False) -> dict[str, Any] | None:
        # The intake travels on its own topic; it may land a moment after the contact that follows it.
        deadline = time.monotonic() + (self.timeout if wait else 0)
        while True:
            started = time.monotonic()
            response = await self.client.get(f"{self.base}/{complaint_id}")
            self.seconds["reads"] += time.monotonic() - started
            if response.status_code != 404:
                response.raise_for_status()
                complaint: dict[str, Any] = response.json()
                self.status[complaint_id] = complaint["status"]
                return complaint
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.2)

    async def _post(self, action: AgentAction, path: str, body: dict[str, Any]) -> None:
        started = time.monotonic()
        response = await self.client.post(f"{self.base}/{action.complaint_id}/{path}", json=body)
        self.seconds["writes"] += time.monotonic() - started
        response.raise_for_status()
        self.status[action.complaint_id] = response.json()["status"]


async def replay(events: list[CloudEvent], plan: list[AgentAction], bootstrap: str, key: str,
                 timeout: float) -> tuple[Counter[str], Counter[str]]:
    """Publish the events in time order and take the plan's steps in between; the steps' outcomes and
    the seconds spent on them."""
    settings = ServiceSettings(service_name="demo", kafka_bootstrap_servers=bootstrap)
    producer = AIOKafkaProducer(**admin_kwargs(settings), acks="all", enable_idempotence=True, linger_ms=20)
    admin = AIOKafkaAdminClient(**admin_kwargs(settings), client_id="carecrm-demo")
    group = ComplaintsSettings(kafka_bootstrap_servers=bootstrap).group_for(CRM_INTERACTIONS)
    await producer.start()
    await admin.start()
    pending = []
    try:
        async with httpx.AsyncClient(headers={"X-API-Key": key}, timeout=60) as client:
            team = CareTeam(client, producer, admin, group, timeout)
            for item in tqdm(timeline(events, plan), total=len(events) + len(plan), unit="ev",
                                      desc="publishing"):
                if isinstance(item, AgentAction):
                    await team.act(item)
                    continue
                pending.append(await producer.send(item.topic, serialize_event(item), key=item.subject.encode(),
                                                   headers=HEADERS))
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
        await admin.close()
    return team.outcomes, team.seconds


# --- Collecting the results -------------------------------------------------------------------------

async def settle(client: httpx.AsyncClient, expected: int, timeout: float) -> dict[str, Any]:
    """Wait until tiering has classified every customer and its count stops moving."""
    deadline = time.monotonic() + timeout
    last, stable_since = -1, time.monotonic()
    report: dict[str, Any] = {}
    with tqdm(total=expected, unit="customer", desc="classified") as bar:
        while time.monotonic() < deadline:
            report = (await client.get(f"http://127.0.0.1:{PORTS['tiering']}/reports/segments")).json()
            count = report.get("customers", 0)
            bar.update(count - bar.n)
            if count != last:
                last, stable_since = count, time.monotonic()
            elif count >= expected or time.monotonic() - stable_since > 20:
                return report
            await asyncio.sleep(2)
    return report


async def read_topic(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every event on ``topic`` from its start, as JSON objects; no consumer group, nothing committed."""
    settings = ServiceSettings(service_name="demo", kafka_bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(topic, **admin_kwargs(settings), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment():  # without a group, every partition once the metadata is in
            if time.monotonic() > deadline:
                return out
            await asyncio.sleep(0.1)
        partitions = sorted(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                out.extend(json.loads(r.value) for r in records if r.value)
    finally:
        await consumer.stop()
    return out


async def collect(key: str, bootstrap: str, expected: int, timeout: float,
                  period: tuple[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(headers={"X-API-Key": key}, timeout=120) as client:
        await settle(client, expected, timeout)
        refresh = (await client.post(f"http://127.0.0.1:{PORTS['tiering']}/population/refresh")).json()
        await asyncio.sleep(5)  # let the refresh's tier changes reach the other services
        segments = (await client.get(f"http://127.0.0.1:{PORTS['tiering']}/reports/segments")).json()
        complaints = (await client.get(f"http://127.0.0.1:{PORTS['complaints']}/reports/complaints",
                                       params={"from": period[0], "to": period[1]})).json()
        notifications = (await client.get(f"http://127.0.0.1:{PORTS['notifications']}/reports/notifications")).json()
    tier_changes = await read_topic(bootstrap, CRM_TIER_CHANGES)
    complaint_events = await read_topic(bootstrap, CRM_COMPLAINTS)
    return {"refresh": refresh, "segments": segments, "complaints": complaints, "notifications": notifications,
            "tier_changes": tier_change_counts(tier_changes),
            "lifecycle": lifecycle_by_month(lifecycle_changes(tier_changes), months(period[0], period[1])),
            "complaint_events": complaint_event_counts(complaint_events)}


# --- Aggregations (pure) ----------------------------------------------------------------------------

def _unique(events: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Each event once: a producer's retry repeats an event under the same id."""
    seen: set[str] = set()
    for event in events:
        if event.get("id") not in seen:
            seen.add(event.get("id"))
            yield event


def _month(at: datetime) -> str:
    return at.astimezone(LONDON).strftime("%Y-%m")  # the retailer's months, in UK time


def months(start: str | datetime, end: str | datetime) -> list[str]:
    """The months from ``start`` to ``end``, both included, as YYYY-MM."""
    first, last = (_month(datetime.fromisoformat(t) if isinstance(t, str) else t) for t in (start, end))
    out, (year, month) = [], (int(first[:4]), int(first[5:]))
    while f"{year:04d}-{month:02d}" <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def lifecycle_changes(tier_changes: Iterable[Mapping[str, Any]]) -> list[tuple[str, datetime, str]]:
    """(customer, effective time, stage) of each lifecycle change on ``crm.tier-changes.v1``."""
    return [(e["subject"], datetime.fromisoformat(e["data"]["effective_at"]), e["data"]["current"])
            for e in _unique(tier_changes) if e.get("data", {}).get("dimension") == "lifecycle"]


def lifecycle_by_month(changes: Iterable[tuple[str, datetime, str]], periods: list[str]) -> dict[str, dict[str, int]]:
    """Per month, how many customers were in each lifecycle stage at its end.

    A customer counts from their first lifecycle change on, in the stage of their latest change
    effective by the end of the month; changes are applied in effective-time order, whatever order
    they arrive in. Changes after the last month are ignored."""
    by_month: dict[str, list[tuple[datetime, str, str]]] = defaultdict(list)
    for customer, at, stage in changes:
        by_month[_month(at)].append((at, customer, stage))
    stage_of: dict[str, str] = {}
    for month in sorted(m for m in by_month if periods and m < periods[0]):
        stage_of.update((c, s) for _, c, s in sorted(by_month[month], key=lambda x: x[0]))
    out: dict[str, dict[str, int]] = {}
    for month in periods:
        stage_of.update((c, s) for _, c, s in sorted(by_month.get(month, []), key=lambda x: x[0]))
        counts = Counter(stage_of.values())
        out[month] = {s: counts[s] for s in [*LIFECYCLE_STAGES, *sorted(set(counts) - set(LIFECYCLE_STAGES))]}
    return out


def tier_change_counts(tier_changes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Tier changes per dimension and direction, and how many of them were bulk (sent to nobody)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    bulk = 0
    for event in _unique(tier_changes):
        data = event.get("data") or {}
        counts[data.get("dimension", "?")][data.get("direction", "?")] += 1
        bulk += bool(data.get("bulk"))
    return {"by_dimension": {dim: {d: counts[dim][d] for d in DIRECTIONS} for dim in sorted(counts)},
            "total": sum(sum(c.values()) for c in counts.values()), "bulk": bulk}


def complaint_event_counts(complaint_events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Lifecycle events of ``crm.complaints.v1`` by type, escalations by level and reason, breaches by target."""
    types: Counter[str] = Counter()
    levels: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    breaches: Counter[str] = Counter()
    for event in _unique(complaint_events):
        kind = str(event.get("type", "?")).removeprefix("complaint.")
        types[kind] += 1
        data = event.get("data") or {}
        changes = data.get("changes") or {}
        if kind == "escalated":
            levels[str(changes.get("escalated_to", "?"))] += 1
            reasons[str(changes.get("reason", "?"))] += 1
        elif kind == "sla_breached":
            breaches[str(data.get("sla_target", "?"))] += 1
    return {"by_type": dict(sorted(types.items())), "escalations": sum(levels.values()),
            "escalated_to": dict(levels), "escalation_reasons": dict(reasons.most_common()),
            "breaches_by_target": dict(breaches)}


# --- Summary and report -----------------------------------------------------------------------------

def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _sla_lines(reports: dict[str, Any]) -> list[str]:
    complaints, events = reports["complaints"], reports.get("complaint_events") or {}
    lines = []
    for target, figures in (complaints.get("sla_attainment") or {}).items():
        lines.append(f"  SLA {target.replace('_', ' ')}: {_rate(figures.get('rate'))} met "
                     f"({figures.get('met')} of {figures.get('settled')} settled)")
    escalated = ", ".join(f"{k} {v}" for k, v in (events.get("escalated_to") or {}).items())
    lines.append(f"  breached complaints: {complaints.get('breached')}; escalations: {events.get('escalations', 0)}"
                 + (f" ({escalated})" if escalated else ""))
    csat = complaints.get("csat") or {}
    lines.append(f"  CSAT: {csat.get('responses')} answers, average {csat.get('average')}, satisfied "
                 f"{_rate(csat.get('satisfied_rate'))}; reopen rate {_rate(complaints.get('reopen_rate'))}")
    return lines


def summary(counts: Counter[str], reports: dict[str, Any], rejected: Counter[str] | None = None,
            care: Counter[str] | None = None) -> str:
    seg = reports["segments"]
    lines = [f"Replayed {sum(counts.values())} events: " + ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))]
    if rejected is not None:
        lines.append(f"Rejected rows (break the contract, not published): {sum(rejected.values())}"
                     + "".join(f"; {n} x {reason}" for reason, n in rejected.most_common()))
    lines += [f"Classified customers: {seg.get('customers')} (policy {seg.get('policy_version')})", "",
              "ABC Pareto: class, customers, share of customers, share of revenue"]
    for row in seg.get("pareto", []):
        lines.append(f"  {row['abc_class']}  {row['customers']:>6}  {row['customer_share']:>7.1%}  "
                     f"{row['spend_share']:>7.1%}")
    for dim, values in seg.get("distribution", {}).items():
        lines.append(f"{dim:<12} " + ", ".join(f"{k}: {v}" for k, v in sorted(values.items())))
    lines += ["", f"Complaints: {reports['complaints'].get('total')} opened", *_sla_lines(reports)]
    if care:
        lines.append("Care team: " + ", ".join(f"{k} {v}" for k, v in sorted(care.items())))
    lines.append("Notifications: " + _flat(reports["notifications"]))
    return "\n".join(lines)


def _flat(report: dict[str, Any], keys: int = 8) -> str:
    return ", ".join(f"{k}={json.dumps(v)[:60]}" for k, v in list(report.items())[:keys])


def _bars(title: str, values: dict[str, float], unit: str = "") -> str:
    top = max(values.values(), default=0) or 1
    rows = "".join(
        f'<tr><td>{html.escape(str(k))}</td><td><div class="bar" style="width:{300 * v / top:.0f}px"></div></td>'
        f"<td>{v:,.4g}{unit}</td></tr>" for k, v in values.items())
    return f"<h3>{html.escape(title)}</h3><table>{rows}</table>"


def _table(value: Any) -> str:
    if isinstance(value, dict):
        return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_table(v)}</td></tr>"
                                   for k, v in value.items()) + "</table>"
    if isinstance(value, list) and value and isinstance(value[0], dict):
        cols = list(value[0])
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c)))}</td>" for c in cols) + "</tr>"
                       for r in value)
        return f"<table><tr>{head}</tr>{body}</table>"
    return html.escape(json.dumps(value) if isinstance(value, list) else str(value))


COLOURS = {"prospect": "#b0b7c3", "new": "#7fb8f0", "repeat": "#3b7dd8", "loyal": "#1f4e9c",
           "at_risk": "#f0a03c", "churned": "#c8463c", "reactivated": "#49a35b",
           "initial": "#b0b7c3", "upgrade": "#49a35b", "downgrade": "#c8463c", "lateral": "#f0a03c"}


def _legend(keys: Iterable[str]) -> str:
    return "<p>" + " ".join(f'<span class="key" style="background:{COLOURS.get(k, "#888")}"></span>'
                            f"{html.escape(k)}" for k in keys) + "</p>"


def stacked_columns_svg(series: Mapping[str, Mapping[str, int]], keys: Iterable[str]) -> str:
    """A stacked column per period (inline SVG, nothing to fetch); each segment has a tooltip."""
    keys = list(keys)
    width, height, column, gap, axis = 0, 220, 34, 10, 40
    top = max((sum(v.get(k, 0) for k in keys) for v in series.values()), default=0) or 1
    shapes = [f'<text x="{axis - 6}" y="12" text-anchor="end">{top:,}</text>',
              f'<text x="{axis - 6}" y="{height}" text-anchor="end">0</text>',
              f'<line x1="{axis}" y1="{height}" x2="{axis + len(series) * (column + gap)}" y2="{height}" '
              'stroke="#999"/>']
    for n, (period, values) in enumerate(series.items()):
        x, y = axis + gap / 2 + n * (column + gap), float(height)
        for key in keys:
            count = values.get(key, 0)
            if not count:
                continue
            h = (height - 4) * count / top
            y -= h
            shapes.append(f'<rect x="{x:.0f}" y="{y:.1f}" width="{column}" height="{h:.1f}" '
                          f'fill="{COLOURS.get(key, "#888")}"><title>{html.escape(period)} {html.escape(key)}: '
                          f"{count:,}</title></rect>")
        shapes.append(f'<text x="{x + column / 2:.0f}" y="{height + 14}" text-anchor="middle">'
                      f"{html.escape(period[2:])}</text>")
        width = int(x + column + gap)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{max(width, 200)}" height="{height + 20}" '
            f'font-size="10" role="img">{"".join(shapes)}</svg>')


def stacked_bars(rows: Mapping[str, Mapping[str, int]], keys: Iterable[str]) -> str:
    """A horizontal stacked bar per row (plain CSS), with the counts beside it."""
    keys = list(keys)
    top = max((sum(v.get(k, 0) for k in keys) for v in rows.values()), default=0) or 1
    body = []
    for name, values in rows.items():
        segments = "".join(
            f'<div class="seg" style="width:{400 * values.get(k, 0) / top:.1f}px;background:{COLOURS.get(k, "#888")}" '
            f'title="{html.escape(k)}: {values.get(k, 0):,}"></div>' for k in keys if values.get(k, 0))
        figures = ", ".join(f"{k} {values.get(k, 0):,}" for k in keys if values.get(k, 0))
        body.append(f"<tr><td>{html.escape(name)}</td><td><div class=\"stack\">{segments}</div></td>"
                    f"<td>{figures}</td></tr>")
    return f"<table>{''.join(body)}</table>"


def _lifecycle_table(series: Mapping[str, Mapping[str, int]]) -> str:
    head = "".join(f"<th>{html.escape(s)}</th>" for s in LIFECYCLE_STAGES)
    body = "".join(f"<tr><td>{html.escape(m)}</td>" + "".join(f"<td>{v.get(s, 0):,}</td>" for s in LIFECYCLE_STAGES)
                   + f"<td>{sum(v.values()):,}</td></tr>" for m, v in series.items())
    return f"<table><tr><th>month</th>{head}<th>customers</th></tr>{body}</table>"


def _complaints_html(reports: dict[str, Any], care: Mapping[str, int]) -> list[str]:
    complaints, events = reports["complaints"], reports.get("complaint_events") or {}
    attainment = {t.replace("_", " "): 100 * (f.get("rate") or 0)
                  for t, f in (complaints.get("sla_attainment") or {}).items()}
    parts = ["<h2>Complaints</h2>",
             "<p>From the complaints service's report (GET /reports/complaints) for the replayed period; "
             "escalations and breaches per target counted from its events on crm.complaints.v1.</p>",
             "<ul>" + "".join(f"<li>{html.escape(line.strip())}</li>" for line in _sla_lines(reports)) + "</ul>",
             _bars("SLA attainment (share of settled targets met)", attainment, " %")]
    if events.get("escalated_to"):
        parts.append(_bars("Escalations by level reached", events["escalated_to"]))
    if events.get("escalation_reasons"):
        parts.append(_bars("Escalations by reason", events["escalation_reasons"]))
    if events.get("by_type"):
        parts.append(_bars("Complaint lifecycle events on crm.complaints.v1", events["by_type"]))
    if care:
        parts.append(_bars("The care team's steps (outcome of each planned step)", dict(sorted(care.items()))))
    parts += ["<h3>The full complaints report</h3>", _table(complaints)]
    return parts


def report_html(counts: Counter[str], reports: dict[str, Any], rejected: Counter[str] | None = None,
                care: Mapping[str, int] | None = None) -> str:
    seg = reports["segments"]
    pareto = seg.get("pareto", [])
    rejected = rejected if rejected is not None else Counter()
    lifecycle = reports.get("lifecycle") or {}
    changes = reports.get("tier_changes") or {}
    rules = "".join(f"<li>{html.escape(rule)}</li>" for rule in MAPPING_RULES)
    rejections = "".join(f"<li>{n} x {html.escape(reason)}</li>" for reason, n in rejected.most_common())
    parts = [
        "<h2>How the data maps to the contract</h2>", f"<ul>{rules}</ul>",
        f"<p>Rejected rows: {sum(rejected.values())}</p>" + (f"<ul>{rejections}</ul>" if rejections else ""),
        "<h2>ABC Pareto</h2>",
        _bars("Share of customers", {r["abc_class"]: 100 * r["customer_share"] for r in pareto}, " %"),
        _bars("Share of revenue", {r["abc_class"]: 100 * r["spend_share"] for r in pareto}, " %"),
        "<h2>Distribution per dimension</h2>",
        *(_bars(dim, values) for dim, values in seg.get("distribution", {}).items() if values),
        "<h2>Lifecycle counts over time</h2>",
        "<p>Customers in each lifecycle stage at the end of each month (UK time), rebuilt from the lifecycle "
        "changes on crm.tier-changes.v1 and their effective times; a customer counts from their first "
        "classification on.</p>",
        stacked_columns_svg(lifecycle, LIFECYCLE_STAGES), _legend(LIFECYCLE_STAGES), _lifecycle_table(lifecycle),
        "<h2>Tier changes</h2>",
        f"<p>{changes.get('total', 0):,} changes on crm.tier-changes.v1, per dimension and direction; "
        f"{changes.get('bulk', 0):,} of them bulk (a population refresh or a reclassification: recorded, sent to "
        "nobody).</p>",
        stacked_bars(changes.get("by_dimension") or {}, DIRECTIONS), _legend(DIRECTIONS),
        "<h2>New customers and churn per first-purchase month</h2>", _table(seg.get("periods", [])),
        *_complaints_html(reports, care or {}),
        "<h2>Notifications</h2>", _table(reports["notifications"]),
        "<h2>Population refresh</h2>", _table(reports["refresh"]),
    ]
    style = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}"
             ".bar{background:#3b7dd8;height:12px}.stack{display:flex;height:12px}.seg{height:12px}"
             ".key{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}")
    replayed = ", ".join(f"{n} {html.escape(t)}" for t, n in sorted(counts.items()))
    return (f"<!doctype html><meta charset=utf-8><title>carecrm demo</title><style>{style}</style>"
            f"<h1>carecrm on the Online Retail data</h1><p>Replayed: {replayed}.</p>{''.join(parts)}"
            f"<p><small>Data: {html.escape(ATTRIBUTION)}.</small></p>")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=352)
    parser.add_argument("--limit", type=int, help="replay only the first N invoices")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the system to settle")
    parser.add_argument("--step-timeout", type=float, default=60.0,
                        help="seconds a care-team step waits for the complaints service to catch up")
    parser.add_argument("--no-care-team", action="store_true",
                        help="replay without the care team's steps: faster, and every complaint breaches")
    args = parser.parse_args(argv)
    key_file = RUN / "dev-api-key"
    if not key_file.exists():
        print("The services are not running: start them with `make up` (or run `make demo`).", file=sys.stderr)
        return 1
    key = key_file.read_text().strip()
    rows = load(DATA, "online-retail", args.limit)
    rejected: Counter[str] = Counter()
    events = synthetic_events(rows, args.seed, rejected)
    plan = [] if args.no_care_team else agent_plan(events, args.seed, until=events[-1].time)
    counts = Counter(e.type for e in events)
    bootstrap = infra.up()["KAFKA_BOOTSTRAP_SERVERS"]
    started = time.monotonic()
    care, care_seconds = asyncio.run(replay(events, plan, bootstrap, key, args.step_timeout))
    print(f"Replayed in {time.monotonic() - started:.0f} s; the care team's {len(plan)} steps took "
          f"{care_seconds['clock']:.0f} s waiting for the complaints service to reach their time, "
          f"{care_seconds['reads']:.0f} s reading and {care_seconds['writes']:.0f} s writing complaints")
    customers = counts["customer.registered"]
    period = (events[0].time.isoformat(), (events[-1].time + timedelta(days=1)).isoformat())
    reports = asyncio.run(collect(key, bootstrap, customers, args.timeout, period))
    (RUN / "report.html").write_text(report_html(counts, reports, rejected, care), encoding="utf-8")
    print()
    print(summary(counts, reports, rejected, care))
    print(f"""
Report:        {RUN / 'report.html'}
Console:       http://127.0.0.1:8000/  (sign in with the development API key, the line in {key_file})
APIs:          customer :8001, tiering :8002, complaints :8003, notifications :8004 (OpenAPI at /docs,
               AsyncAPI at /asyncapi.json); API key with every scope in {key_file}
E-mails sent:  {RUN / 'outbox' / 'mail'}
Stop with:     make down
Data:          {ATTRIBUTION}""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
