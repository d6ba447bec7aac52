"""Batches of the customer service on the real store: new customers in one insert, each guarantee kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo.asynchronous.collection import AsyncCollection

from services.customer import domain
from services.customer.activity import Activity
from services.customer.repository import CUSTOMERS, INDEXES, Repository
from services.customer.settings import CustomerSettings
from services.customer.workflow import Workflow
from shared.clock import WallClock
from shared.contract import CloudEvent
from shared.contract.parser import parse_event
from shared.kafka import Rejected
from shared.mongo import Store
from shared.pii import PiiCipher
from tests.helpers import envelope, purchase

pytestmark = pytest.mark.integration


class Published:
    """Stands in for the shared publisher: what would have gone out, in order."""

    def __init__(self) -> None:
        self.events: list[CloudEvent] = []

    async def publish(self, events: Any, **_: Any) -> None:
        self.events += list(events)

    async def tombstone(self, topic: str, customer_id: str) -> None:
        pass


def event(raw: dict[str, Any]) -> CloudEvent:
    return parse_event(json.dumps(raw).encode())


def registration(customer: str, **data: Any) -> CloudEvent:
    return event(envelope("customer.registered", customer, {"name": "Li Lei", "email": "lei.li@example.com",
                                                            "consents": {"sms": True}, **data}, source="shop/web"))


@pytest.fixture
async def store(infra: dict[str, str], unique: str) -> AsyncIterator[tuple[Store, PiiCipher]]:
    settings = CustomerSettings(mongodb_database=f"test_customer_activity_{unique}")
    store = Store.connect(settings, INDEXES)
    await store.ensure_indexes()
    try:
        yield store, PiiCipher.from_settings(settings)
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


def process(store: tuple[Store, PiiCipher]) -> tuple[Activity, Published, Repository]:
    """A fresh process: it knows no customer yet."""
    repo, published = Repository(store[0], store[1]), Published()
    return Activity(Workflow(repo, published, WallClock()), repo), published, repo  # type: ignore[arg-type]


async def test_registrations_of_new_ids_are_one_insert_and_a_batch_read_again_changes_nothing(
        store: tuple[Store, PiiCipher], unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    new, taken = f"C-new-{unique}", f"C-taken-{unique}"
    activity, published, repo = process(store)
    # A classification that came before the profile: the registration joins that document.
    await repo.set_classification(taken, {"value_tier": "high"}, registration(taken).time, classified=False)
    batch = [registration(new), registration(taken, name="Han Meimei"),
             event(envelope("customer.updated", new, {"locale": "zh-CN"}))]
    rejected: list[CloudEvent] = []

    async def reject(e: CloudEvent, exc: Rejected) -> None:
        rejected.append(e)

    inserts: list[int] = []
    insert_many = AsyncCollection.insert_many

    async def counted(self: AsyncCollection[Any], docs: list[dict[str, Any]], **kw: Any) -> Any:
        if self.name == CUSTOMERS:
            inserts.append(len(docs))
        return await insert_many(self, docs, **kw)

    monkeypatch.setattr(AsyncCollection, "insert_many", counted)
    await activity.intakes(batch, reject)
    assert inserts == [2] and not rejected
    stored = {c: await repo.load(c) for c in (new, taken)}
    assert stored[new] is not None and stored[new].profile is not None
    assert (stored[new].profile.version, stored[new].profile.locale, stored[new].profile.name) == (2, "zh-CN", "Li Lei")
    assert stored[taken] is not None and stored[taken].profile is not None
    assert (stored[taken].profile.name, stored[taken].classification) == ("Han Meimei", {"value_tier": "high"})
    assert sorted((e.subject, e.data.version) for e in published.events) == [(new, 1), (new, 2), (taken, 1)]
    assert await store[0]["consents"].count_documents({"customer_id": new}) == 1

    # Read again by a process that knows nothing: every profile stays as it was.
    again, _, _ = process(store)
    await again.intakes(batch, reject)
    for customer, before in stored.items():
        after = await repo.load(customer)
        assert after is not None and after.profile == before.profile  # type: ignore[union-attr]
    assert await store[0]["consents"].count_documents({"customer_id": new}) == 1


async def test_first_purchases_of_new_ids_make_their_prospects_in_one_insert_once(
        store: tuple[Store, PiiCipher], unique: str) -> None:
    customers = [f"C-{n}-{unique}" for n in range(3)]
    activity, published, repo = process(store)
    active = domain.apply_changes(None, {"name": "Li Lei"}, at=registration(customers[0]).time, source="shop/web",
                                  activate=True)
    assert active is not None
    await repo.save(customers[0], active, expected_version=None, cause="earlier")  # stored, unknown to the process

    async def reject(e: CloudEvent, exc: Rejected) -> None:
        raise AssertionError(exc)

    batch = [event(purchase(c, f"O-{c}", source="pos/shanghai-01")) for c in customers]
    await activity.purchases(batch + [event(purchase(customers[1], f"O2-{unique}"))], reject)
    statuses = {c: (await repo.load(c)).status for c in customers}  # type: ignore[union-attr]
    assert statuses == {customers[0]: "active", customers[1]: "prospect", customers[2]: "prospect"}
    assert sorted(e.subject for e in published.events) == customers[1:]
    again, published_again, _ = process(store)
    await again.purchases(batch, reject)
    # Read again, each stub is published again under the same event id (its first publication may
    # not have happened) and written no second time.
    assert sorted(e.id for e in published_again.events) == sorted(e.id for e in published.events)
    assert [(await repo.load(c)).profile.version for c in customers[1:]] == [1, 1]  # type: ignore[union-attr]



def snapshot(customer: str, at: datetime, tier: str) -> CloudEvent:
    return event(envelope("customer.classification", customer, {
        "value_tier": tier, "lifecycle": "active", "abc_class": "A", "vip": "regular",
        "metrics": {"currency": "CNY", "spend_12m": "1200.00", "orders_12m": 3},
        "policy_version": "2026-1", "updated_at": at.isoformat()}, time_=at))


async def test_classifications_of_stored_customers_are_written_together_and_the_newest_stays(
        store: tuple[Store, PiiCipher], unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    made, newer, stale, absent = (f"C-{n}-{unique}" for n in ("made", "newer", "stale", "absent"))
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    activity, _, repo = process(store)

    async def reject(e: CloudEvent, exc: Rejected) -> None:
        raise AssertionError(exc)

    await activity.purchases([event(purchase(c, f"O-{c}")) for c in (made, stale)], reject)
    # Stored with a newer classification: one written by another process (``stale``: after this
    # one made the document, so what it remembers is out of date).
    for customer in (newer, stale):
        await repo.set_classification(customer, {"value_tier": "high"}, at + timedelta(minutes=30), classified=False)
    bulk: list[int] = []
    bulk_write = AsyncCollection.bulk_write

    async def counted(self: AsyncCollection[Any], requests: list[Any], **kw: Any) -> Any:
        if self.name == CUSTOMERS:
            bulk.append(len(requests))
        return await bulk_write(self, requests, **kw)

    monkeypatch.setattr(AsyncCollection, "bulk_write", counted)
    await activity.classifications([snapshot(c, at, "low") for c in (made, newer, stale, absent)], reject)
    tiers = {c: (await store[0][CUSTOMERS].find_one({"_id": c}) or {}).get("tier") for c in (made, newer, stale, absent)}
    assert tiers == {made: "low", newer: "high", stale: "high", absent: "low"}
    assert bulk and sum(bulk) >= 3  # made, newer and stale in commands of many; absent upserted alone
