"""The tiering service on the real broker and store."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from services.tiering.app import build_app
from shared.clock import FixedClock
from shared.contract.topics import CRM_CUSTOMER_TIERS, CRM_CUSTOMERS, ORDERS_PURCHASES, dlq
from tests.helpers import envelope, eventually, running

from .support import (
    BASE,
    POLICY_KEY,
    READ_KEY,
    WRITE_KEY,
    Watch,
    profile,
    purchase,
    refund,
    send,
    settings_for,
)

pytestmark = pytest.mark.integration


async def classification(client: Any, customer: str) -> dict[str, Any] | None:
    response = await client.get(f"/customers/{customer}/classification", headers={"X-API-Key": READ_KEY})
    return response.json() if response.status_code == 200 else None


async def classified(client: Any, customer: str, **expected: Any) -> dict[str, Any] | None:
    doc = await classification(client, customer)
    if doc and all(doc.get(k) == v for k, v in expected.items()):
        return doc
    return None


async def pending_downgrade(client: Any, customer: str, dimension: str) -> dict[str, Any] | None:
    doc = await classification(client, customer)
    return doc if doc and dimension in doc["downgrade_pending"] else None


async def test_a_prospect_buys_is_upgraded_refunds_and_is_downgraded_only_after_the_grace_period(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    clock = FixedClock(BASE + timedelta(hours=1))
    app = build_app(await settings_for(unique), clock=clock)
    async with Watch(infra["KAFKA_BOOTSTRAP_SERVERS"]) as watch, running(app) as client:
        await send(infra, CRM_CUSTOMERS, profile(customer, BASE))
        await eventually(lambda: classified(client, customer, lifecycle="prospect"))
        await send(infra, ORDERS_PURCHASES, purchase(customer, f"O1-{unique}", "6000.00", BASE + timedelta(minutes=5)))
        await eventually(lambda: classified(client, customer, value_tier="medium", lifecycle="new"))
        big = purchase(customer, f"O2-{unique}", "15000.00", BASE + timedelta(minutes=10))
        await send(infra, ORDERS_PURCHASES, big, {**big, "id": "another-delivery"})
        upgraded = await eventually(lambda: classified(client, customer, value_tier="high"))
        assert upgraded["metrics"]["spend_12m"] == 21000_00 and upgraded["metrics"]["lifetime_orders"] == 2
        clock.advance(timedelta(days=1))
        await send(infra, ORDERS_PURCHASES, refund(customer, f"R1-{unique}", "14000.00", BASE + timedelta(days=1),
                                                   order_id=f"O2-{unique}"))
        held = await eventually(lambda: pending_downgrade(client, customer, "value_tier"))
        assert held["value_tier"] == "high"
        pending = held["downgrade_pending"]["value_tier"]
        assert pending["pending"] == "medium" and "20000.00 CNY" in pending["needed"]
        clock.advance(timedelta(days=31))  # past the grace: the scheduler downgrades with no new event
        await eventually(lambda: classified(client, customer, value_tier="medium"))
        history = (await client.get(f"/customers/{customer}/tier-history", headers={"X-API-Key": READ_KEY})).json()
        events = await watch.events(customer, at_least=len(history["changes"]))
    value = [(c["previous"], c["current"], c["direction"]) for c in history["changes"] if c["dimension"] == "value_tier"]
    assert value == [(None, "medium", "initial"), ("medium", "high", "upgrade"), ("high", "medium", "downgrade")]
    lifecycle = [(c["previous"], c["current"]) for c in history["changes"] if c["dimension"] == "lifecycle"]
    assert lifecycle[:3] == [(None, "prospect"), ("prospect", "new"), ("new", "repeat")]
    published = [e for e in events if e["data"]["dimension"] == "value_tier"]
    assert [e["data"]["direction"] for e in published] == ["initial", "upgrade", "downgrade"]
    assert datetime.fromisoformat(published[2]["data"]["effective_at"]) == datetime.fromisoformat(
        pending["effective_at"])
    assert published[1]["data"]["metrics"]["spend_12m"] == "21000.00"
    assert len({e["id"] for e in events}) == len(events)

