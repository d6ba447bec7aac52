"""Replay of the real UCI Online Retail data (see data/README.md) against an independent computation.

The whole file (22,190 invoices) goes through the service's workflow and store directly, in the batches
the Kafka consumer would hand it; a sample of customers also goes through the real broker. The
cut-offs and classes are then checked against figures computed here from the CSV alone.
"""

from __future__ import annotations

import asyncio
import csv
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from services.tiering.app import build_app
from services.tiering.workflow import Workflow
from services.tiering.policy import default_policy
from services.tiering.repository import INDEXES, Repository
from shared.clock import FixedClock
from shared.contract.events import PurchaseCompleted, PurchaseRefunded
from shared.contract.topics import ORDERS_PURCHASES
from shared.mongo import Store
from tests.helpers import eventually, running

from .support import READ_KEY, send, settings_for

pytestmark = pytest.mark.integration
CSV = Path(__file__).resolve().parents[3] / "data" / "online_retail_invoices.csv"
LONDON = ZoneInfo("Europe/London")
END = datetime(2011, 12, 9, 13, 0, tzinfo=UTC)  # just after the last invoice
RATE = 9  # GBP in the default policy's CNY base


def rows() -> list[dict[str, str]]:
    with CSV.open(newline="") as f:
        return list(csv.DictReader(f))


def when(row: dict[str, str]) -> datetime:
    return datetime.fromisoformat(row["invoice_ts"]).replace(tzinfo=LONDON)


def to_event(row: dict[str, str], unique: str) -> dict[str, Any]:
    customer = f"UCI{row['customer_id']}-{unique}"
    base = {"specversion": "1.0", "id": f"uci-{row['invoice_no']}-{unique}", "source": "uci/online-retail",
            "subject": customer, "time": when(row).isoformat(), "dataschemaversion": 1}
    amount = Decimal(row["amount_gbp"])
    if row["is_cancellation"] == "1":
        return {**base, "type": "order.purchase.refunded",
                "data": {"refund_id": row["invoice_no"], "amount": str(-amount), "currency": "GBP"}}
    return {**base, "type": "order.purchase.completed",
            "data": {"order_id": row["invoice_no"], "total_amount": str(amount), "currency": "GBP",
                     "channel": "online"}}


def independent(data: list[dict[str, str]]) -> dict[str, Any]:
    """Net spend, orders and recency per customer in the year to END, straight from the CSV."""
    start = END - timedelta(days=365)
    spend: dict[str, int] = defaultdict(int)
    orders: dict[str, int] = defaultdict(int)
    last: dict[str, datetime] = {}
    for row in data:
        t, cents = when(row), round(Decimal(row["amount_gbp"]) * 100) * RATE
        if row["is_cancellation"] == "0" and cents <= 0:
            continue
        if row["is_cancellation"] == "0":
            last[row["customer_id"]] = max(last.get(row["customer_id"], t), t)
        if t <= start:
            continue
        spend[row["customer_id"]] += cents
        orders[row["customer_id"]] += row["is_cancellation"] == "0"
    active = [c for c in orders if orders[c] > 0]
    net = {c: max(0, spend[c]) for c in active}
    return {"net": net, "orders": {c: orders[c] for c in active},
            "recency": {c: (END - last[c]).days for c in active}}


def nearest_rank_quintiles(values: list[int]) -> list[int]:
    ordered = sorted(values)
    return [ordered[math.ceil(len(ordered) * k / 5) - 1] for k in (1, 2, 3, 4)]


class Sink:
    """Stands in for the Kafka producer in the bulk part: counts what would be published."""

    def __init__(self) -> None:
        self.count = 0

    async def send(self, events: Any) -> asyncio.Future[None]:
        """Like ``Publisher.send``: the deliveries are one future, here already done."""
        self.count += len(list(events))
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered


async def test_the_online_retail_replay_matches_an_independent_pareto_vip_and_rfm_computation(
        infra: dict[str, str], unique: str) -> None:
    data = rows()
    settings = await settings_for(unique)
    store = Store.connect(settings, INDEXES)
    await store.ensure_indexes()
    repo = Repository(store)
    workflow = Workflow(settings, repo, FixedClock(END), CollectorRegistry(), publisher=Sink())  # type: ignore[arg-type]
    rejected: Counter[str] = Counter()

    async def reject(event: Any, exc: Any) -> None:
        rejected[exc.code] += 1

    events, batch = [], []
    for row in data:
        try:
            batch.append((PurchaseRefunded if row["is_cancellation"] == "1" else PurchaseCompleted)
                         .model_validate(to_event(row, unique)))
        except ValidationError:
            rejected["invalid_data"] += 1
            continue
        if len(batch) == 2000:
            events.append(batch)
            batch = []
    events.append(batch)
    try:
        for chunk in events:
            await workflow.ingest(chunk, reject)
        for chunk in events[:2]:  # a replay of the start changes nothing
            await workflow.ingest(chunk, reject)
        refreshed = await workflow.refresh()
        cutoffs = workflow.cutoffs
        final: dict[str, Any] = {}
        async for doc in repo.scan({"ledger": 0}):
            if doc["rev"] == workflow.directory.get(doc["customer_id"]):
                final[doc["customer_id"]] = doc
    finally:
        await store.close()

    assert rejected == {"invalid_data": 4}  # the four purchase invoices that sum to zero
    truth = independent(data)
    assert cutoffs is not None and refreshed["population"] == sum(1 for v in truth["net"].values() if v > 0)
    ours = {cid.removeprefix("UCI").removesuffix(f"-{unique}"): doc for cid, doc in final.items()}
    valid = {r["customer_id"] for r in data if r["is_cancellation"] == "1" or Decimal(r["amount_gbp"]) > 0}
    assert len(ours) == len(valid)
    for cid, net in truth["net"].items():
        assert ours[cid]["metrics"]["spend_12m"] == net, cid

    # ABC: A is the smallest top group holding 70 % of spend, B the next 20 %.
    spends = sorted((v for v in truth["net"].values() if v > 0), reverse=True)
    total, running_sum, expected = sum(spends), 0, Counter()
    for spend in spends:
        expected["A" if running_sum < total * Decimal("0.7") else "B" if running_sum < total * Decimal("0.9")
                 else "C"] += 1
        running_sum += spend
    classes = Counter(ours[c]["output"]["abc_class"] for c, v in truth["net"].items() if v > 0)
    share_a = sum(v for c, v in truth["net"].items() if v >= cutoffs.abc_a_min) / total
    assert Decimal("0.70") <= Decimal(share_a) < Decimal("0.71")
    assert cutoffs.abc_a_min == spends[expected["A"] - 1]
    assert cutoffs.abc_b_min == spends[expected["A"] + expected["B"] - 1]
    # With the high-potential lift, every customer is at or above the class the spend alone gives.
    for cid, net in truth["net"].items():
        if net <= 0:
            continue
        plain = "A" if net >= cutoffs.abc_a_min else "B" if net >= cutoffs.abc_b_min else "C"
        assert ours[cid]["output"]["abc_class"] <= plain, cid  # "A" < "B" < "C" as strings
    assert sum(classes.values()) == len(spends)

    # VIP: the top 1 % by spend.
    vip_expected = math.floor(len(spends) * 0.01)
    assert cutoffs.vip_count == vip_expected
    assert sum(1 for d in ours.values() if d["output"].get("vip") == "vip") == vip_expected

    # RFM quintiles over the active customers, and the resulting scores.
    assert list(cutoffs.r_bounds) == nearest_rank_quintiles(list(truth["recency"].values()))
    assert list(cutoffs.f_bounds) == nearest_rank_quintiles(list(truth["orders"].values()))
    assert list(cutoffs.m_bounds) == nearest_rank_quintiles(list(truth["net"].values()))
    policy = default_policy()
    expected_segments = Counter()
    for cid in truth["orders"]:
        r = 1 + sum(truth["recency"][cid] < b for b in cutoffs.r_bounds)
        f = 1 + sum(truth["orders"][cid] > b for b in cutoffs.f_bounds)
        expected_segments[policy.segment(r, f)] += 1
    assert Counter(ours[c]["output"]["rfm_segment"] for c in truth["orders"]) == expected_segments


async def test_a_sample_of_the_online_retail_data_through_kafka_lands_in_the_same_ledger(
        infra: dict[str, str], unique: str) -> None:
    data = rows()
    sample_customers = sorted({r["customer_id"] for r in data})[:25]
    sample = [r for r in data if r["customer_id"] in sample_customers]
    app = build_app(await settings_for(unique), clock=FixedClock(END))
    truth = independent(sample)
    async with running(app) as client:
        await send(infra, ORDERS_PURCHASES, *(to_event(r, unique) for r in sample))
        last = max(truth["net"], key=lambda c: truth["orders"][c])

        async def settled() -> bool:
            docs = [await client.get(f"/customers/UCI{c}-{unique}/classification", headers={"X-API-Key": READ_KEY})
                    for c in truth["net"]]
            return all(d.status_code == 200 for d in docs) and [d.json()["metrics"]["spend_12m"] for d in docs] == \
                list(truth["net"].values())

        await eventually(settled, timeout=60)
        assert last in truth["net"]
