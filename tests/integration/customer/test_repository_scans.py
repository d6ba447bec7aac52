"""The customer service's hot paths read no collection whole, whatever it holds.

FerretDB v1 hands PostgreSQL only equalities on scalars; anything else is filtered after reading
every row the rest selects. With a few thousand documents stored, every consumed topic and the
routine API calls run here, and PostgreSQL's own counters must show no sequential scan.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.customer.app import build_app
from shared.pii import PiiCipher
from services.customer.repository import COMPLAINTS, CONSENTS, CUSTOMERS, TIMELINE, Repository
from shared.contract.events import CustomerProfile
from shared.contract.topics import (
    CRM_COMPLAINTS,
    CRM_CUSTOMER_INTAKE,
    CRM_CUSTOMER_TIERS,
    CRM_INTERACTIONS,
    CRM_NOTIFICATIONS,
    ORDERS_PURCHASES,
)
from tests.helpers import envelope, eventually, produce, purchase, running
from tests.scans import scanned, settled

from .conftest import consuming, customer_settings, headers

pytestmark = pytest.mark.integration
STORED = 3_000


async def _fill(url: str, database: str, settings: Any, unique: str) -> None:
    """``STORED`` customers as the repository writes them, each with timeline, consent and
    complaint documents: enough rows that a whole-table read is one PostgreSQL would count."""
    repo = Repository(None, PiiCipher.from_settings(settings))  # type: ignore[arg-type]
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    docs: dict[str, list[dict[str, Any]]] = {name: [] for name in (CUSTOMERS, TIMELINE, CONSENTS, COMPLAINTS)}
    for n in range(STORED):
        customer = f"F-{n}-{unique}"
        profile = CustomerProfile(status="active", source="tests", version=1, created_at=at, updated_at=at,
                                  name=f"Person {n}", phone=f"+86139{n:08d}", tags=["stored"])
        docs[CUSTOMERS].append({"_id": customer, **repo.profile_document(customer, profile, "fill")})
        docs[TIMELINE].append({"_id": f"{customer}|purchase|S{n}", "customer_id": customer, "kind": "purchase",
                               "at": at, "amount": "10.00", "currency": "CNY"})
        docs[CONSENTS].append({"_id": f"{customer}|c", "customer_id": customer, "consent": "sms", "at": at,
                               "version": 1, "granted": True})
        docs[COMPLAINTS].append({"_id": f"{customer}|K", "customer_id": customer, "complaint_id": "K",
                                 "status": "received", "at": at})
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    try:
        for name, batch in docs.items():
            await client[database][name].insert_many(batch)
    finally:
        await client.close()


async def test_events_and_routine_api_calls_read_no_collection_whole(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]
    settings = customer_settings(unique, keys["entries"])
    database = settings.database_name
    reader, full = headers(keys["reader"]), headers(keys["all"])
    app = build_app(settings)
    async with running(app) as client:
        await consuming(app)  # collections and indexes exist from here
        await _fill(infra["MONGODB_URL"], database, settings, unique)
        before = await settled(database)  # the service keeps running meanwhile

        new, old = f"N-{unique}", f"F-7-{unique}"
        now = datetime.now(UTC)
        await produce(bootstrap, CRM_CUSTOMER_INTAKE, [
            (new.encode(), envelope("customer.registered", new, {"name": "Ann", "phone": "+8613700000001",
                                                                 "email": "ann@example.com", "consents": {"sms": True}})),
            (old.encode(), envelope("customer.updated", old, {"locale": "en-US", "tags": ["stored", "spring"]}))])
        await produce(bootstrap, ORDERS_PURCHASES, [
            (old.encode(), purchase(old, f"O-{unique}", "30.00")),
            (f"P-{unique}".encode(), purchase(f"P-{unique}", f"O2-{unique}", "5.00")),  # makes a prospect
            (old.encode(), envelope("order.purchase.refunded", old, {"refund_id": f"R-{unique}", "amount": "1.00",
                                                                     "currency": "CNY"}))])
        await produce(bootstrap, CRM_INTERACTIONS, [(old.encode(), envelope(
            "customer.interaction.recorded", old, {"interaction_id": f"I-{unique}", "kind": "call", "channel": "phone",
                                                   "direction": "inbound", "summary": "asked about delivery"}))])
        await produce(bootstrap, CRM_CUSTOMER_TIERS, [(key.encode(), envelope("customer.classification", key, {
            "value_tier": "high", "lifecycle": "repeat", "abc_class": "A", "vip": "regular",
            "metrics": {"currency": "CNY", "spend_12m": "1200.00", "orders_12m": 3}, "policy_version": "1",
            "updated_at": now.isoformat()}, time_=now)) for key in (old, f"F-8-{unique}")])
        await produce(bootstrap, CRM_COMPLAINTS, [
            (old.encode(), envelope("complaint.opened", old, {"complaint_id": f"K-{unique}", "status": "received",
                                                              "priority": "p2", "category": "delivery"})),
            (old.encode(), envelope("complaint.acknowledged", old, {"complaint_id": "K", "status": "acknowledged",
                                                               "priority": "p2", "category": "delivery"}))])
        await produce(bootstrap, CRM_NOTIFICATIONS, [(old.encode(), envelope(
            "notification.sent", old, {"notification_id": f"N-{unique}", "trigger": "tier_upgrade", "channel": "sms",
                                       "template": "upgrade"}))])

        async def applied() -> bool:
            view = (await client.get(f"/customers/{old}", headers=reader)).json()
            summary, classification = view.get("summary") or {}, view.get("classification") or {}
            done = (view.get("locale") == "en-US" and summary.get("orders") == 2 and summary.get("refunds") == 1
                    and summary.get("interactions") == 1 and summary.get("messages") == 1
                    and summary.get("complaints") == 2 and classification.get("value_tier") == "high")
            others = [await client.get(f"/customers/{c}", headers=reader) for c in (new, f"P-{unique}")]
            return done and all(r.status_code == 200 for r in others)

        await eventually(applied, timeout=60)
        routine = [
            await client.get(f"/customers/{old}/timeline", params={"limit": 2}, headers=full),
            await client.get(f"/customers/{old}/timeline", params={"kind": "purchase"}, headers=reader),
            await client.get(f"/customers/{old}/consents", headers=reader),
            await client.get("/customers/lookup", params={"phone": "+86 139 0000 0012"}, headers=full),
            await client.get("/customers/lookup", params={"email": "ann@example.com"}, headers=full),
            await client.get("/customers", params={"limit": 20}, headers=reader),
            await client.get("/customers", params={"tier": "high"}, headers=reader),
            await client.get("/customers", params={"tag": "spring", "needs": "standard"}, headers=reader),
            await client.patch(f"/customers/{old}", json={"locale": "de-DE"}, headers=full),
            await client.put(f"/customers/{old}/consents", json={"email": True}, headers=full),
        ]
        page = routine[0].json()
        routine.append(await client.get(f"/customers/{old}/timeline", params={"limit": 2,
                                                                             "cursor": page["next_cursor"]},
                                        headers=full))
        listed = routine[5].json()
        routine.append(await client.get("/customers", params={"limit": 20, "cursor": listed["next_cursor"]},
                                        headers=reader))
        routine.append(await client.delete(f"/customers/F-9-{unique}", headers=full))
        after = await settled(database)
    assert scanned(before, after) == {}
    assert [r.status_code for r in routine] == [200] * 12 + [204]
    assert len(routine[3].json()["items"]) == 1 and len(listed["items"]) == 20
    assert [c["customer_id"] for c in routine[6].json()["items"]] in ([old, f"F-8-{unique}"], [f"F-8-{unique}", old])
