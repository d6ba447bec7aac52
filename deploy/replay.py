"""``replay``: publish a CSV of purchases to the event contract, in event-time order.

    replay data/online_retail_invoices.csv                       # the UCI Online Retail invoices
    replay orders.csv --format plain --rate 500                   # customer_id,order_id,time,amount,currency
    replay data/online_retail_invoices.csv --dry-run              # validate and count only

Mapping of the Online Retail data (UCI dataset #352, CC BY 4.0, see data/README.md):
- a purchase invoice becomes ``order.purchase.completed`` (``order_id`` = invoice number, GBP,
  channel ``online``); its time is UK local time, given the Europe/London offset;
- a cancellation (``C...`` invoice) becomes ``order.purchase.refunded`` without ``order_id``, since
  the data does not name the cancelled invoice; ``refund_id`` = the cancellation's number;
- an invoice whose amount is zero or less breaks the contract (amounts are > 0): it is rejected and
  counted, never published;
- with ``--register`` each customer is first registered (``customer.registered``) with the country
  of their first invoice.
Event ids are derived from the invoice number, so replaying the file twice publishes the same ids.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError
from tqdm import tqdm

from shared.contract import CloudEvent, serialize_event
from shared.contract.events import (
    CustomerProfileData,
    CustomerRegistered,
    PurchaseCompleted,
    PurchaseCompletedData,
    PurchaseRefunded,
    PurchaseRefundedData,
)
from shared.kafka import CLOUDEVENTS_CONTENT_TYPE, admin_kwargs
from shared.settings import ServiceSettings

NAMESPACE = uuid.UUID("0b7f4f9c-3f7e-4a3c-9a36-2f1f0e2d7c51")
LONDON = ZoneInfo("Europe/London")
SOURCE = "replay/online-retail"
COUNTRIES = {
    "United Kingdom": "GB", "Germany": "DE", "France": "FR", "EIRE": "IE", "Belgium": "BE", "Spain": "ES",
    "Netherlands": "NL", "Switzerland": "CH", "Portugal": "PT", "Australia": "AU", "Italy": "IT",
    "Finland": "FI", "Sweden": "SE", "Norway": "NO", "Channel Islands": "JE", "Japan": "JP", "Poland": "PL",
    "Denmark": "DK", "Cyprus": "CY", "Austria": "AT", "Singapore": "SG", "Malta": "MT", "USA": "US",
    "Iceland": "IS", "Israel": "IL", "Greece": "GR", "Canada": "CA", "Czech Republic": "CZ",
    "Lithuania": "LT", "United Arab Emirates": "AE", "Saudi Arabia": "SA", "Bahrain": "BH", "RSA": "ZA",
    "Lebanon": "LB", "Brazil": "BR",
}


@dataclass(frozen=True)
class Row:
    customer_id: str
    order_id: str
    time: datetime
    amount: Decimal
    currency: str
    refund: bool
    country: str | None = None


def event_id(kind: str, natural_key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{natural_key}"))


def read_online_retail(path: Path) -> Iterator[Row]:
    with path.open(newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            yield Row(
                customer_id=rec["customer_id"],
                order_id=rec["invoice_no"],
                time=datetime.fromisoformat(rec["invoice_ts"]).replace(tzinfo=LONDON),
                amount=Decimal(rec["amount_gbp"]),
                currency="GBP",
                refund=rec["is_cancellation"] == "1",
                country=COUNTRIES.get(rec["country"]),
            )


def read_plain(path: Path) -> Iterator[Row]:
    with path.open(newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            when = datetime.fromisoformat(rec["time"])
            amount = Decimal(rec["amount"])
            yield Row(rec["customer_id"], rec["order_id"], when, abs(amount), rec["currency"], refund=amount < 0)


def to_event(row: Row) -> CloudEvent:
    """Map one row to its contract event; raises ``ValidationError`` where the row breaks the contract."""
    if row.refund:
        amount = abs(row.amount)
        return PurchaseRefunded(
            id=event_id("refund", row.order_id), source=SOURCE, subject=row.customer_id, time=row.time,
            data=PurchaseRefundedData(refund_id=row.order_id, amount=amount, currency=row.currency,
                                      reason="cancellation invoice"),
        )
    return PurchaseCompleted(
        id=event_id("order", row.order_id), source=SOURCE, subject=row.customer_id, time=row.time,
        data=PurchaseCompletedData(order_id=row.order_id, total_amount=row.amount, currency=row.currency,
                                   channel="online"),
    )


def registration(row: Row) -> CustomerRegistered:
    return CustomerRegistered(
        id=event_id("registration", row.customer_id), source=SOURCE, subject=row.customer_id, time=row.time,
        data=CustomerProfileData(country=row.country, locale="en-GB" if row.country == "GB" else "en-US",
                                 timezone="Europe/London" if row.country in (None, "GB") else None,
                                 tags=["online-retail"]),
    )


@dataclass
class Outcome:
    published: Counter[str]
    rejected: Counter[str]
    seconds: float


async def replay(rows: list[Row], settings: ServiceSettings, *, rate: float = 0.0, dry_run: bool = False,
                 register: bool = False, progress: bool = True) -> Outcome:
    published: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    producer = None
    if not dry_run:
        producer = AIOKafkaProducer(**admin_kwargs(settings), acks="all", enable_idempotence=True,
                                    linger_ms=20, max_batch_size=256 * 1024)
        await producer.start()
    registered: set[str] = set()
    started = time.monotonic()
    pending: list[asyncio.Future] = []
    try:
        for n, row in enumerate(tqdm(rows, unit="ev", disable=not progress, desc="replay"), start=1):
            events: list[CloudEvent] = []
            if register and row.customer_id not in registered:
                registered.add(row.customer_id)
                events.append(registration(row))
            try:
                events.append(to_event(row))
            except ValidationError as exc:
                rejected[_reason(exc)] += 1
            for event in events:
                published[event.type] += 1
                if producer is not None:
                    pending.append(await producer.send(
                        event.topic, serialize_event(event), key=event.subject.encode(),
                        headers=[("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
            if rate > 0:
                ahead = n / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await asyncio.gather(*pending)
    finally:
        if producer is not None:
            await producer.stop()
    return Outcome(published, rejected, time.monotonic() - started)


def _reason(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg'].removeprefix('Value error, ')}"


def load(path: Path, fmt: str, limit: int | None = None) -> list[Row]:
    reader = read_online_retail if fmt == "online-retail" else read_plain
    rows = sorted(reader(path), key=lambda r: r.time)  # event-time order, whatever the file's order
    return rows[:limit] if limit else rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path)
    parser.add_argument("--format", choices=["online-retail", "plain"], default="online-retail")
    parser.add_argument("--rate", type=float, default=0.0, help="events per second; 0 = as fast as possible")
    parser.add_argument("--limit", type=int, help="replay only the first N rows (in time order)")
    parser.add_argument("--dry-run", action="store_true", help="validate and count; publish nothing")
    parser.add_argument("--register", action="store_true", help="register each customer before their first event")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    rows = load(args.csv, args.format, args.limit)
    outcome = asyncio.run(replay(rows, ServiceSettings(service_name="replay"), rate=args.rate,
                                 dry_run=args.dry_run, register=args.register, progress=not args.no_progress))
    verb = "validated" if args.dry_run else "published"
    print(f"{sum(outcome.published.values())} events {verb} in {outcome.seconds:.1f}s")
    for kind, count in sorted(outcome.published.items()):
        print(f"  {kind:<28} {count}")
    print(f"{sum(outcome.rejected.values())} rows rejected (they break the contract)")
    for reason, count in outcome.rejected.most_common():
        print(f"  {reason:<60} {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
