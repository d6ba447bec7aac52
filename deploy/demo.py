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

The care team (``deploy/demo_care.py``) acts during the replay, at the event times of its plan, so
that the complaints service judges its acknowledgements and resolutions against the targets as of
then. Each step waits for the complaints service, whose writes queue behind the other services' in
the shared store, so the care team makes a run much longer than the replay alone;
``--no-care-team`` leaves it out (and every complaint breaches). The summary and the report are
made by ``deploy/demo_report.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections import Counter
from datetime import date, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError
from tqdm import tqdm

from deploy.demo_care import HEADERS, AgentAction, CareTeam, agent_plan, timeline
from deploy.demo_report import (
    ATTRIBUTION,
    complaint_event_counts,
    lifecycle_by_month,
    lifecycle_changes,
    months,
    report_html,
    summary,
    tier_change_counts,
)
from deploy.local import infra
from deploy.replay import NAMESPACE, SOURCE, Row, _reason, event_id, load, to_event
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
from shared.kafka import admin_kwargs
from shared.settings import ServiceSettings

RUN = infra.RUN_DIR
DATA = infra.ROOT / "data" / "online_retail_invoices.csv"
PORTS = {"customer": 8001, "tiering": 8002, "complaints": 8003, "notifications": 8004}
CATEGORIES = ["product_quality", "delivery", "billing", "service_attitude", "price", "other"]


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


# --- Playing the replay and the care team -----------------------------------------------------------

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
            team = CareTeam(client, producer, admin, group, timeout,
                            f"http://127.0.0.1:{PORTS['complaints']}/complaints")
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
