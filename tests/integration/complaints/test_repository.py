"""The complaints store keeps what the services rely on, on the real store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.complaints.repository import INDEXES, Repository
from shared.mongo import Store
from tests.integration.complaints.test_service import MONDAY, settings

pytestmark = pytest.mark.integration


async def test_a_batch_of_tiers_keeps_each_customers_newest_and_an_older_one_read_late_changes_nothing(
        infra: dict[str, str], unique: str) -> None:
    store = Store.connect(settings(unique), INDEXES)
    await store.ensure_indexes()
    repo = Repository(store)
    later = MONDAY + timedelta(days=1)
    customers = [f"T-{unique}-{i}" for i in range(300)]
    try:
        await repo.put_tiers((c, "high", later) for c in customers)
        await repo.put_tiers([(customers[0], "low", MONDAY), (customers[1], "vip", later + timedelta(days=1))])
        assert await repo.tier(customers[0]) == "high"
        assert await repo.tier(customers[1]) == "vip"
        assert [await repo.tier(c) for c in customers[2:]] == ["high"] * 298
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
