"""``make demo``: the whole system on the real Online Retail data.

With the services running (``make demo`` starts them on the event-time clock, so 2010-2011 data is
judged as of 2010-2011), this registers every customer of the dataset, replays their purchases and
cancellations in event-time order, adds a seeded share of complaints, follow-up calls and survey
answers so that every service has work, waits for the system to settle, then prints a summary and
writes an HTML report to ``.run/report.html``.

Contacts are synthetic (the dataset has none): a seeded 70 % of customers get an ``example.com``
address and consent to care messages, so e-mails land in the local SMTP sink (``.run/outbox/mail``).
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import random
import sys
import time
import uuid
from collections import Counter
from datetime import date, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from deploy.local import infra
from deploy.replay import NAMESPACE, SOURCE, Row, event_id, load, to_event
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
from shared.kafka import CLOUDEVENTS_CONTENT_TYPE, admin_kwargs
from shared.settings import ServiceSettings

RUN = infra.RUN_DIR
DATA = infra.ROOT / "data" / "online_retail_invoices.csv"
PORTS = {"customer": 8001, "tiering": 8002, "complaints": 8003, "notifications": 8004}
ATTRIBUTION = ('UCI Machine Learning Repository dataset #352 "Online Retail" (Dr Daqing Chen, London South Bank '
               "University), CC BY 4.0; Chen, Sain & Guo (2012), doi:10.1057/dbm.2012.17")
CATEGORIES = ["product_quality", "delivery", "billing", "service_attitude", "price", "other"]


def synthetic_events(rows: list[Row], seed: int) -> list[CloudEvent]:
    """Registrations, the replayed purchases, and seeded complaints and interactions, in time order."""
    rng = random.Random(seed)
    events: list[CloudEvent] = []
    seen: set[str] = set()
    for row in rows:
        if row.customer_id not in seen:
            seen.add(row.customer_id)
            events.append(_registration(row, rng))
        try:
            events.append(to_event(row))
        except ValueError:
            continue  # counted by the replay summary; the contract forbids it
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


async def publish(events: list[CloudEvent], bootstrap: str) -> None:
    settings = ServiceSettings(service_name="demo", kafka_bootstrap_servers=bootstrap)
    producer = AIOKafkaProducer(**admin_kwargs(settings), acks="all", enable_idempotence=True, linger_ms=20)
    await producer.start()
    pending = []
    try:
        for event in tqdm(events, unit="ev", desc="publishing"):
            pending.append(await producer.send(event.topic, serialize_event(event), key=event.subject.encode(),
                                               headers=[("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def settle(client: httpx.AsyncClient, expected: int, timeout: float) -> dict[str, Any]:
    """Wait until tiering has classified every customer and its count stops moving."""
    deadline = time.monotonic() + timeout
    last, stable_since = -1, time.monotonic()
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


async def collect(key: str, expected: int, timeout: float, period: tuple[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(headers={"X-API-Key": key}, timeout=120) as client:
        await settle(client, expected, timeout)
        refresh = (await client.post(f"http://127.0.0.1:{PORTS['tiering']}/population/refresh")).json()
        await asyncio.sleep(5)  # let the refresh's tier changes reach the other services
        segments = (await client.get(f"http://127.0.0.1:{PORTS['tiering']}/reports/segments")).json()
        complaints = (await client.get(f"http://127.0.0.1:{PORTS['complaints']}/reports/complaints",
                                       params={"from": period[0], "to": period[1]})).json()
        notifications = (await client.get(f"http://127.0.0.1:{PORTS['notifications']}/reports/notifications")).json()
    return {"refresh": refresh, "segments": segments, "complaints": complaints, "notifications": notifications}


def summary(counts: Counter[str], reports: dict[str, Any]) -> str:
    seg = reports["segments"]
    lines = [f"Replayed {sum(counts.values())} events: " + ", ".join(f"{n} {t}" for t, n in sorted(counts.items())),
             f"Classified customers: {seg.get('customers')} (policy {seg.get('policy_version')})", "",
             "ABC Pareto: class, customers, share of customers, share of revenue"]
    for row in seg.get("pareto", []):
        lines.append(f"  {row['abc_class']}  {row['customers']:>6}  {row['customer_share']:>7.1%}  "
                     f"{row['spend_share']:>7.1%}")
    for dim, values in seg.get("distribution", {}).items():
        lines.append(f"{dim:<12} " + ", ".join(f"{k}: {v}" for k, v in sorted(values.items())))
    lines += ["", "Complaints: " + _flat(reports["complaints"]), "Notifications: " + _flat(reports["notifications"])]
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


def report_html(counts: Counter[str], reports: dict[str, Any]) -> str:
    seg = reports["segments"]
    pareto = seg.get("pareto", [])
    parts = [
        "<h2>ABC Pareto</h2>",
        _bars("Share of customers", {r["abc_class"]: 100 * r["customer_share"] for r in pareto}, " %"),
        _bars("Share of revenue", {r["abc_class"]: 100 * r["spend_share"] for r in pareto}, " %"),
        "<h2>Distribution per dimension</h2>",
        *(_bars(dim, values) for dim, values in seg.get("distribution", {}).items() if values),
        "<h2>New customers and churn per first-purchase month</h2>", _table(seg.get("periods", [])),
        "<h2>Complaints</h2>", _table(reports["complaints"]),
        "<h2>Notifications</h2>", _table(reports["notifications"]),
        "<h2>Population refresh</h2>", _table(reports["refresh"]),
    ]
    style = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}"
             ".bar{background:#3b7dd8;height:12px}")
    replayed = ", ".join(f"{n} {html.escape(t)}" for t, n in sorted(counts.items()))
    return (f"<!doctype html><meta charset=utf-8><title>carecrm demo</title><style>{style}</style>"
            f"<h1>carecrm on the Online Retail data</h1><p>Replayed: {replayed}.</p>{''.join(parts)}"
            f"<p><small>Data: {html.escape(ATTRIBUTION)}.</small></p>")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=352)
    parser.add_argument("--limit", type=int, help="replay only the first N invoices")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the system to settle")
    args = parser.parse_args(argv)
    key_file = RUN / "dev-api-key"
    if not key_file.exists():
        print("The services are not running: start them with `make up` (or run `make demo`).", file=sys.stderr)
        return 1
    rows = load(DATA, "online-retail", args.limit)
    events = synthetic_events(rows, args.seed)
    counts = Counter(e.type for e in events)
    asyncio.run(publish(events, infra.up()["KAFKA_BOOTSTRAP_SERVERS"]))
    customers = counts["customer.registered"]
    period = (events[0].time.isoformat(), (events[-1].time + timedelta(days=1)).isoformat())
    reports = asyncio.run(collect(key_file.read_text().strip(), customers, args.timeout, period))
    (RUN / "report.html").write_text(report_html(counts, reports), encoding="utf-8")
    print()
    print(summary(counts, reports))
    print(f"""
Report:        {RUN / 'report.html'}
APIs:          customer :8001, tiering :8002, complaints :8003, notifications :8004 (OpenAPI at /docs,
               AsyncAPI at /asyncapi.json); API key with every scope in {key_file}
E-mails sent:  {RUN / 'outbox' / 'mail'}
Stop with:     make down
Data:          {ATTRIBUTION}""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
