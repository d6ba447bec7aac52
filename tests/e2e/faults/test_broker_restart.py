"""The broker restarted in the middle of a replay, under services that keep running."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from services.tiering.handlers import SUBSCRIBED as TIERING_TOPICS
from shared.contract.topics import ORDERS_PURCHASES

from .support import (
    CUSTOMER_TOPICS,
    FaultInfra,
    caught_up,
    counter,
    differences,
    expected_orders,
    in_thread,
    produce_events,
    purchases_in_timelines,
    replay,
    skip_backlog,
    stored_classifications,
    wait_for,
)

pytestmark = pytest.mark.e2e


async def test_services_ride_out_a_broker_restart_mid_replay_and_count_every_purchase_once(
        faults: FaultInfra, launch: Any, unique: str) -> None:
    plan = replay(f"B{unique}", customers=60, purchases=600, spread=None)
    half = len(plan.events) // 2
    tiering_db, customer_db = f"faults_broker_tiering_{unique}", f"faults_broker_customer_{unique}"
    await skip_backlog(faults.bootstrap, f"faults-broker-t-{unique}", TIERING_TOPICS)
    await skip_backlog(faults.bootstrap, f"faults-broker-c-{unique}", CUSTOMER_TOPICS)
    tiering = launch("tiering", KAFKA_GROUP_ID=f"faults-broker-t-{unique}", MONGODB_DATABASE=tiering_db,
                     TIERING_REFRESH_INTERVAL_S="0")
    customer = launch("customer", KAFKA_GROUP_ID=f"faults-broker-c-{unique}", MONGODB_DATABASE=customer_db)
    await asyncio.gather(in_thread(tiering.start), in_thread(customer.start))

    await produce_events(faults.bootstrap, ORDERS_PURCHASES, plan.events[:half])

    async def under_way() -> bool:
        return await counter(tiering.url, "carecrm_tiering_events_total", kind="purchase") >= 100

    await wait_for(under_way, timeout=60, what="the replay under way")
    await in_thread(faults.kafka.down)
    await asyncio.sleep(3)
    await in_thread(faults.kafka.up)
    await produce_events(faults.bootstrap, ORDERS_PURCHASES, plan.events[half:])

    services = [tiering, customer]
    await caught_up(faults.bootstrap, f"faults-broker-t-{unique}.{ORDERS_PURCHASES}", timeout=180, alive=services)
    await caught_up(faults.bootstrap, f"faults-broker-c-{unique}.{ORDERS_PURCHASES}", timeout=180, alive=services)
    assert [s.starts for s in services] == [1, 1]  # recovered by themselves, never restarted
    async with httpx.AsyncClient(timeout=10) as client:
        for service in services:
            assert (await client.get(f"{service.url}/health")).status_code == 200, service.name

    problems = differences(plan, await stored_classifications(faults.mongodb_url, tiering_db))
    assert not problems, f"{len(problems)} customers differ from a clean run, e.g. {problems[:5]}"
    timelines = await purchases_in_timelines(faults.mongodb_url, customer_db)
    assert {c: sorted(o) for c, o in timelines.items()} == expected_orders(plan)
