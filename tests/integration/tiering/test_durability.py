"""State written behind the stream: offsets follow the writes, and nothing is lost in between."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from services.tiering.app import build_app
from services.tiering.settings import TieringSettings
from shared.clock import FixedClock
from shared.contract.topics import ORDERS_PURCHASES
from tests.helpers import eventually, running

from .support import BASE, READ_KEY, Watch, purchase, send, settings_for

pytestmark = pytest.mark.integration
#: Long enough that no timed write happens while a test looks.
NEVER = 60.0


async def committed(settings: TieringSettings) -> int:
    """How far the service's group committed on the purchases topic, summed over partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.group_for(ORDERS_PURCHASES))
    finally:
        await admin.close()
    return sum(o.offset for tp, o in offsets.items() if tp.topic == ORDERS_PURCHASES and o.offset > 0)


async def stored(settings: TieringSettings, customer: str) -> list[dict[str, Any]]:
    client: AsyncMongoClient = AsyncMongoClient(settings.mongodb_url.get_secret_value())
    try:
        return await client[settings.database_name]["customers"].find({"customer_id": customer}).to_list(None)
    finally:
        await client.close()


async def value_tier(client: Any, customer: str, expected: str) -> dict[str, Any] | None:
    response = await client.get(f"/customers/{customer}/classification", headers={"X-API-Key": READ_KEY})
    doc = response.json() if response.status_code == 200 else None
    return doc if doc and doc["value_tier"] == expected else None


async def stored_tiers(settings: TieringSettings, customer: str) -> list[str]:
    return [d["output"]["value_tier"] for d in await stored(settings, customer)]


async def holding(unique: str) -> tuple[str, TieringSettings, Any, int]:
    """A customer id, a tiering service that writes only when told to, and where its group stood."""
    settings = await settings_for(unique, flush_interval_s=NEVER)
    app = build_app(settings, clock=FixedClock(BASE + timedelta(hours=1)))
    return f"C-{unique}", settings, app, await committed(settings)


async def buys_high(infra: dict[str, str], client: Any, customer: str, unique: str) -> None:
    await send(infra, ORDERS_PURCHASES, purchase(customer, f"O1-{unique}", "25000.00", BASE))
    await eventually(lambda: value_tier(client, customer, "high"))


async def test_offsets_are_committed_only_once_the_state_they_led_to_is_written(
        infra: dict[str, str], unique: str) -> None:
    customer, settings, app, before = await holding(unique)
    async with running(app) as client:
        await buys_high(infra, client, customer, unique)
        # Classified and answered from memory, but neither written nor committed yet.
        assert await stored(settings, customer) == []
        assert await committed(settings) == before

        await app.state.workflow.flush()
        assert await stored_tiers(settings, customer) == ["high"]
        assert await committed(settings) == before + 1


async def test_a_service_that_stops_writes_what_it_holds_and_commits_its_offsets(
        infra: dict[str, str], unique: str) -> None:
    customer, settings, app, before = await holding(unique)
    async with running(app) as client:
        await buys_high(infra, client, customer, unique)
    assert await stored_tiers(settings, customer) == ["high"]
    assert await committed(settings) == before + 1


async def test_a_service_stopped_before_writing_reads_the_records_again_and_reaches_the_same_state_and_events(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    settings = await settings_for(unique, flush_interval_s=NEVER)
    clock = FixedClock(BASE + timedelta(hours=1))
    crashed = build_app(settings, clock=clock)
    crashed.state.runtime.stop_hooks.clear()  # as if killed: no last write at shutdown
    async with Watch(infra["KAFKA_BOOTSTRAP_SERVERS"]) as watch:
        async with running(crashed) as client:
            await send(infra, ORDERS_PURCHASES, purchase(customer, f"O1-{unique}", "25000.00", BASE))
            first = await eventually(lambda: value_tier(client, customer, "high"))
            published = await watch.events(customer, at_least=1)
        assert published and await stored(settings, customer) == []

        again = build_app(settings.model_copy(update={"flush_interval_s": 0.2}), clock=clock)
        async with running(again) as client:
            second = await eventually(lambda: value_tier(client, customer, "high"))
            await eventually(lambda: stored(settings, customer))
        everything = await watch.events(customer, at_least=2 * len(published))
    assert {k: v for k, v in second.items() if k != "updated_at"} == {
        k: v for k, v in first.items() if k != "updated_at"}
    # The same record gives the same events again: a consumer that saw them drops them by id.
    assert len(everything) == 2 * len(published)
    assert sorted(e["id"] for e in everything) == sorted(2 * [e["id"] for e in published])
    assert await stored_tiers(settings, customer) == ["high"]


async def test_a_write_that_fails_keeps_the_state_and_the_offsets_for_the_next_one(
        infra: dict[str, str], unique: str) -> None:
    customer, settings, app, before = await holding(unique)
    workflow = app.state.workflow
    async with running(app) as client:
        await buys_high(infra, client, customer, unique)
        save = workflow.repo.save

        async def store_away(*_: Any) -> None:
            raise ConnectionError("store away")
        workflow.repo.save = store_away
        with pytest.raises(ConnectionError):
            await workflow.flush()
        assert customer in workflow.saving.unsaved and await committed(settings) == before
        assert await value_tier(client, customer, "high")  # still answered

        # Evaluated again before the next write: that one writes the newest revision only.
        await send(infra, ORDERS_PURCHASES, purchase(customer, f"O2-{unique}", "100.00", BASE + timedelta(hours=1)))
        await eventually(lambda: _spent(client, customer, 2510000))
        workflow.repo.save = save
        await workflow.flush()
        docs = await stored(settings, customer)
        assert [(d["output"]["value_tier"], len(d["ledger"])) for d in docs] == [("high", 2)]
        assert await committed(settings) == before + 2 and not workflow.saving.unsaved


async def _spent(client: Any, customer: str, minor: int) -> bool:
    response = await client.get(f"/customers/{customer}/classification", headers={"X-API-Key": READ_KEY})
    return response.status_code == 200 and response.json()["metrics"]["spend_12m"] == minor
