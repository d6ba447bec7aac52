"""The notifications store keeps personal data sealed, and forgets an erased customer, on the real store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.notifications.domain import Profile, SuppressionEntry
from services.notifications.repository import Repository
from shared.mongo import Store
from shared.pii import PiiCipher

pytestmark = pytest.mark.integration


async def test_names_addresses_and_numbers_are_sealed_at_rest_and_read_back_whole(
        store: Store, cipher: PiiCipher, unique: str) -> None:
    repo = Repository(store, cipher)
    email, phone, name = f"Erin.{unique}@Example.org", f"+86 138 {int(unique[:6], 16) % 10**8:08d}", f"顾客 {unique}"
    profile = Profile(f"C-{unique}", name=name, email=email, phone=phone, locale="zh-CN", timezone="Asia/Shanghai",
                      consents={"email": True})
    await repo.save_profile(profile, "Asia/Shanghai")
    await repo.save_tiers({profile.customer_id: {"value_tier": "high"}})
    raw = await store["customers"].find({}).to_list(None)
    for secret in (email, phone, name):
        assert secret not in str(raw)
    back = await repo.profile(profile.customer_id)
    assert back is not None and (back.name, back.email, back.phone, back.value_tier) == (name, email, phone, "high")


async def test_an_erased_customer_leaves_the_suppression_list_and_an_address_entry_stays(
        store: Store, cipher: PiiCipher, unique: str) -> None:
    repo = Repository(store, cipher)
    erased, other = f"C-{unique}", f"C-other-{unique}"
    email = f"erin.{unique}@example.org"
    at = datetime.now(UTC)
    await repo.save_profile(Profile(erased, email=email), "Asia/Shanghai")
    for customer in (erased, other):
        await repo.suppression_list.add(SuppressionEntry("customer", customer), "unsubscribed", at)
    await repo.suppression_list.add(SuppressionEntry("email", email), "bounced", at)
    await repo.erase(erased)
    assert await repo.profile(erased) is None
    left = await repo.suppression_list.entries(None, 10)
    assert sorted((d["kind"], d["value"]) for d in left) == [("customer", other), ("email", email)]


async def test_a_customer_whose_document_cannot_be_opened_is_skipped_and_the_zone_pass_goes_on(
        store: Store, cipher: PiiCipher, unique: str) -> None:
    repo = Repository(store, cipher)
    zone = "Asia/Shanghai"
    for n in range(3):
        await repo.save_profile(Profile(f"C-{n}-{unique}", name=f"顾客 {n}", timezone=zone), zone)
    # Sealed values are bound to their document: moved under another id they fail to open.
    moved = await store["customers"].find_one({"_id": f"C-1-{unique}"})
    assert moved is not None
    await store["customers"].insert_one({**moved, "_id": f"C-moved-{unique}"})
    found = [p.customer_id async for batch in repo.customers_in(zone, 2) for p in batch]
    assert sorted(found) == [f"C-{n}-{unique}" for n in range(3)]
