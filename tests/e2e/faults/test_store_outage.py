"""The store stopped for a while in the middle of a replay."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.tiering.handlers import SUBSCRIBED as TIERING_TOPICS
from shared.contract.topics import (
    ORDERS_PURCHASES,
    dlq,
)

from .support import (
    CUSTOMER_TOPICS,
    FaultInfra,
    caught_up,
    committed_offsets,
    counter,
    differences,
    expected_orders,
    in_thread,
    produce_events,
    purchases_in_timelines,
    read_topic,
    replay,
    skip_backlog,
    stored_classifications,
    wait_for,
)

pytestmark = pytest.mark.e2e


async def test_consumers_wait_out_a_store_outage_commit_nothing_meanwhile_and_count_every_purchase_once(
        faults: FaultInfra, launch: Any, unique: str) -> None:
    plan = replay(f"D{unique}", customers=60, purchases=600, spread=None)
    tiering_group, customer_group = f"faults-store-t-{unique}", f"faults-store-c-{unique}"
    tiering_db, customer_db = f"faults_store_tiering_{unique}", f"faults_store_customer_{unique}"
    await skip_backlog(faults.bootstrap, tiering_group, TIERING_TOPICS)
    await skip_backlog(faults.bootstrap, customer_group, CUSTOMER_TOPICS)
    tiering = launch("tiering", KAFKA_GROUP_ID=tiering_group, MONGODB_DATABASE=tiering_db,
                     TIERING_REFRESH_INTERVAL_S="0")
    customer = launch("customer", KAFKA_GROUP_ID=customer_group, MONGODB_DATABASE=customer_db)
    services = [tiering, customer]
    await asyncio.gather(in_thread(tiering.start), in_thread(customer.start))
    half = len(plan.events) // 2
    await produce_events(faults.bootstrap, ORDERS_PURCHASES, plan.events[:half])

    async def under_way() -> bool:
        return await counter(tiering.url, "carecrm_tiering_events_total", kind="purchase") >= 100

    await wait_for(under_way, timeout=60, what="the replay under way")
    groups = [f"{tiering_group}.{ORDERS_PURCHASES}", f"{customer_group}.{ORDERS_PURCHASES}"]
    await in_thread(faults.ferretdb.down)
    await produce_events(faults.bootstrap, ORDERS_PURCHASES, plan.events[half:])  # work that must wait
    await asyncio.sleep(2)  # a batch in hand when the store went may still commit what it had written
    during = [await committed_offsets(faults.bootstrap, g) for g in groups]
    await asyncio.sleep(8)
    # Nothing the services could not store was committed (nor dead-lettered) while it was away.
    assert [await committed_offsets(faults.bootstrap, g) for g in groups] == during
    await in_thread(faults.ferretdb.up)

    for group in groups:
        await caught_up(faults.bootstrap, group, timeout=180, alive=services)
    assert [s.starts for s in services] == [1, 1]
    # They did meet the outage: the customer service in its handlers, tiering in its background write.
    assert "handler_failed_will_retry" in customer.log_text()
    assert "state_write_failed_will_retry" in tiering.log_text()
    prefix = f"D{unique}-".encode()
    assert not await read_topic(faults.bootstrap, dlq(ORDERS_PURCHASES), lambda r: (r.key or b"").startswith(prefix))

    problems = differences(plan, await stored_classifications(faults.mongodb_url, tiering_db))
    assert not problems, f"{len(problems)} customers differ from a clean run, e.g. {problems[:5]}"
    timelines = await purchases_in_timelines(faults.mongodb_url, customer_db)
    assert {c: sorted(o) for c, o in timelines.items()} == expected_orders(plan)
