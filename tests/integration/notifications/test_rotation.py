"""Key rotation of the notifications store on the real store: the copies of contacts resealed, and
suppressed addresses found under the old blind-index key until they are filed under the new one."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from typing import Any

import pytest

from services.notifications.domain import Profile, SuppressionEntry
from services.notifications.repository import INDEXES, Repository
from services.notifications.rotation import rotate_keys
from services.notifications.settings import NotificationsSettings
from shared.mongo import Store
from shared.pii import PiiCipher

pytestmark = pytest.mark.integration
AT = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


class Opened:
    """A repository on the test's database under the given keys."""

    def __init__(self, unique: str, **keys: Any) -> None:
        self.settings = NotificationsSettings(mongodb_database=f"test_notifications_rot_{unique}", **keys)
        self.store = Store.connect(self.settings, INDEXES)
        self.repo = Repository(self.store, PiiCipher.from_settings(self.settings))

    async def __aenter__(self) -> Repository:
        await self.store.ensure_indexes()
        return self.repo

    async def __aexit__(self, *_: object) -> None:
        await self.store.close()


async def test_suppressed_addresses_are_found_during_and_after_a_rotation_of_both_keys(
        infra: dict[str, str], unique: str) -> None:
    pii1, pii2, blind1, blind2 = _key(), _key(), _key(), _key()
    people = [Profile(f"C-{i}-{unique}", name=f"Person {i}", email=f"p{i}-{unique}@example.com") for i in range(5)]
    async with Opened(unique, pii_keys={"k1": pii1}, pii_active_key_id="k1", blind_index_key=blind1) as repo:
        for person in people:
            await repo.save_profile(person, "Asia/Shanghai")
        for person in people[:3]:
            await repo.suppression_list.add(SuppressionEntry("email", person.email.upper()),  # type: ignore[union-attr]
                                            "bounced", AT)
    rotating = {"pii_keys": {"k1": pii1, "k2": pii2}, "pii_active_key_id": "k2", "blind_index_key": blind2,
                "blind_index_previous_keys": [blind1], "rotation_batch_size": 2}
    async with Opened(unique, **rotating) as repo:
        assert len(await repo.suppression_list.entries_for(people)) == 3  # found under the old blind index
        rewritten = await rotate_keys(repo, 2)
        again = await rotate_keys(repo, 2)
        raw = await repo.suppression_list.suppressions.find({}).to_list(None)
        raw_people = await repo.customers.find({}).to_list(None)
    assert rewritten == {"customers": 5, "staff_alerts": 0, "suppressions": 3}
    assert again == {"customers": 0, "staff_alerts": 0, "suppressions": 0}
    assert len(raw) == 3 and {d["value"]["k"] for d in raw} == {"k2"}
    assert {d["pii_kid"] for d in raw_people} == {"k2"}
    assert "example.com" not in json.dumps(raw_people, default=str) and "Person" not in json.dumps(raw_people, default=str)
    async with Opened(unique, pii_keys={"k2": pii2}, pii_active_key_id="k2", blind_index_key=blind2) as repo:
        found = await repo.suppression_list.entries_for(people)
        listed = await repo.suppression_list.entries("email", 10)
        profile = await repo.profile(people[4].customer_id)
    assert sorted(found) == sorted(p.customer_id for p in people[:3])
    assert sorted(s["value"] for s in listed) == sorted(p.email.upper() for p in people[:3])  # type: ignore[union-attr]
    assert profile is not None and profile.email == people[4].email
