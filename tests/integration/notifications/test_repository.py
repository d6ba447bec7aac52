"""The notifications store keeps personal data sealed, and forgets an erased customer, on the real store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.notifications.domain import Profile, SuppressionEntry
from services.notifications.repository import INDEXES, Repository
from services.notifications.settings import NotificationsSettings
from shared.mongo import Store
from shared.pii import PiiCipher

pytestmark = pytest.mark.integration


async def test_names_addresses_and_numbers_are_sealed_at_rest_and_read_back_whole(
        infra: dict[str, str], unique: str) -> None:
    settings = NotificationsSettings(mongodb_database=f"test_notifications_repo_{unique}")
    store = Store.connect(settings, INDEXES)
    repo = Repository(store, PiiCipher.from_settings(settings))
    email, phone, name = f"Erin.{unique}@Example.org", f"+86 138 {int(unique[:6], 16) % 10**8:08d}", f"顾客 {unique}"
    profile = Profile(f"C-{unique}", name=name, email=email, phone=phone, locale="zh-CN", timezone="Asia/Shanghai",
                      consents={"email": True})
    try:
        await repo.save_profile(profile, "Asia/Shanghai")
        await repo.save_tiers({profile.customer_id: {"value_tier": "high"}})
        raw = await store["customers"].find({}).to_list(None)
        for secret in (email, phone, name):
            assert secret not in str(raw)
        back = await repo.profile(profile.customer_id)
        assert back is not None and (back.name, back.email, back.phone, back.value_tier) == (name, email, phone, "high")
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


async def test_an_erased_customer_leaves_the_suppression_list_and_an_address_entry_stays(
        infra: dict[str, str], unique: str) -> None:
    settings = NotificationsSettings(mongodb_database=f"test_notifications_erase_{unique}")
    store = Store.connect(settings, INDEXES)
    repo = Repository(store, PiiCipher.from_settings(settings))
    erased, other = f"C-{unique}", f"C-other-{unique}"
    email = f"erin.{unique}@example.org"
    at = datetime.now(UTC)
    try:
        await repo.save_profile(Profile(erased, email=email), "Asia/Shanghai")
        for customer in (erased, other):
            await repo.suppression_list.add(SuppressionEntry("customer", customer), "unsubscribed", at)
        await repo.suppression_list.add(SuppressionEntry("email", email), "bounced", at)
        await repo.erase(erased)
        assert await repo.profile(erased) is None
        left = await repo.suppression_list.entries(None, 10)
        assert sorted((d["kind"], d["value"]) for d in left) == [("customer", other), ("email", email)]
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


async def test_a_customer_whose_document_cannot_be_opened_is_skipped_and_the_zone_pass_goes_on(
        infra: dict[str, str], unique: str) -> None:
    settings = NotificationsSettings(mongodb_database=f"test_notifications_unreadable_{unique}")
    store = Store.connect(settings, INDEXES)
    repo = Repository(store, PiiCipher.from_settings(settings))
    zone = "Asia/Shanghai"
    try:
        for n in range(3):
            await repo.save_profile(Profile(f"C-{n}-{unique}", name=f"顾客 {n}", timezone=zone), zone)
        # Sealed values are bound to their document: moved under another id they fail to open.
        moved = await store["customers"].find_one({"_id": f"C-1-{unique}"})
        assert moved is not None
        await store["customers"].insert_one({**moved, "_id": f"C-moved-{unique}"})
        found = [p.customer_id async for batch in repo.customers_in(zone, 2) for p in batch]
        assert sorted(found) == [f"C-{n}-{unique}" for n in range(3)]
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
