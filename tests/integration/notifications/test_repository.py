"""The notifications store keeps personal data sealed, on the real store."""

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
        by_address = await repo.add_suppression(SuppressionEntry("email", email.lower()), "bounced",
                                                datetime.now(UTC))
        await repo.add_suppression(SuppressionEntry("phone", phone), "complaint", datetime.now(UTC))
        raw = [*await store["customers"].find({}).to_list(None), *await store["suppressions"].find({}).to_list(None)]
        for secret in (email, email.lower(), phone, name):
            assert secret not in str(raw)
        back = await repo.profile(profile.customer_id)
        assert back is not None and (back.name, back.email, back.phone, back.value_tier) == (name, email, phone, "high")
        # The profile's address, written with capitals, meets the entry; spaces in a number do not matter.
        found = await repo.suppressions_for([back])
        assert sorted(e.kind for e in found[profile.customer_id]) == ["email", "phone"]
        assert by_address["value"] == email.lower()
        listed = await repo.list_suppressions("email", 10)
        assert [d["value"] for d in listed] == [email.lower()]
        assert await repo.remove_suppression(listed[0]["_id"])
        assert [e.kind for e in (await repo.suppressions_for([back]))[profile.customer_id]] == ["phone"]
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
