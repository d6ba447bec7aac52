"""The suppression list on the real store: addresses and numbers sealed at rest, found by a profile."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.notifications.domain import Profile, SuppressionEntry
from services.notifications.suppressions_repository import SuppressionList
from shared.mongo import Store
from shared.pii import PiiCipher

pytestmark = pytest.mark.integration


async def test_addresses_and_numbers_are_sealed_at_rest_and_a_profile_finds_its_entries(
        store: Store, cipher: PiiCipher, unique: str) -> None:
    suppressions = SuppressionList(store, cipher)
    email, phone = f"Erin.{unique}@Example.org", f"+86 138 {int(unique[:6], 16) % 10**8:08d}"
    profile = Profile(f"C-{unique}", email=email, phone=phone, locale="zh-CN", timezone="Asia/Shanghai",
                      consents={"email": True})
    by_address = await suppressions.add(SuppressionEntry("email", email.lower()), "bounced", datetime.now(UTC))
    await suppressions.add(SuppressionEntry("phone", phone), "complaint", datetime.now(UTC))
    raw = await store["suppressions"].find({}).to_list(None)
    for secret in (email, email.lower(), phone):
        assert secret not in str(raw)
    # The profile's address, written with capitals, meets the entry; spaces in a number do not matter.
    found = await suppressions.entries_for([profile])
    assert sorted(e.kind for e in found[profile.customer_id]) == ["email", "phone"]
    assert by_address["value"] == email.lower()
    listed = await suppressions.entries("email", 10)
    assert [d["value"] for d in listed] == [email.lower()]
    assert await suppressions.remove(listed[0]["_id"])
    assert [e.kind for e in (await suppressions.entries_for([profile]))[profile.customer_id]] == ["phone"]
