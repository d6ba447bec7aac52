"""Two tiering instances in one consumer group, sharing one database, with rebalances mid-replay."""

from __future__ import annotations

import random
from typing import Any

import pytest

from services.tiering.handlers import SUBSCRIBED
from shared.contract.topics import ORDERS_PURCHASES

from .support import (
    FaultInfra,
    caught_up,
    classifications,
    counter,
    differences,
    in_thread,
    produce_events,
    replay,
    skip_backlog,
    stored_classifications,
    wait_for,
)

pytestmark = pytest.mark.e2e
APPLIED = "carecrm_tiering_events_total"


async def test_a_second_tiering_instance_joining_and_leaving_mid_replay_ends_as_a_clean_run(
        faults: FaultInfra, launch: Any, unique: str) -> None:
    plan = replay(f"R{unique}", customers=600, purchases=7_000, spread=None)
    parts = [plan.events[:800], plan.events[800:4_000], plan.events[4_000:5_500], plan.events[5_500:]]
    group, database = f"faults-rebalance-{unique}", f"faults_rebalance_{unique}"
    settings = {"KAFKA_GROUP_ID": group, "MONGODB_DATABASE": database, "TIERING_REFRESH_INTERVAL_S": "0"}
    await skip_backlog(faults.bootstrap, group, SUBSCRIBED)
    a = launch("tiering", "a", **settings)
    b = launch("tiering", "b", **settings)
    topic_group = f"{group}.{ORDERS_PURCHASES}"

    # A alone: every customer is in its memory.
    await produce_events(faults.bootstrap, ORDERS_PURCHASES, parts[0])
    await in_thread(a.start)
    await caught_up(faults.bootstrap, topic_group, timeout=120, alive=[a])

    # B joins while A works through the next part: A loses half of its partitions mid-batch.
    await produce_events(faults.bootstrap, ORDERS_PURCHASES, parts[1])
    await in_thread(b.start)

    async def b_assigned() -> bool:
        return f"assigned to partitions: (TopicPartition(topic='{ORDERS_PURCHASES}'" in b.log_text()

    await wait_for(b_assigned, timeout=60, what="B assigned partitions of the purchases")
    await produce_events(faults.bootstrap, ORDERS_PURCHASES, parts[2])
    await caught_up(faults.bootstrap, topic_group, timeout=120, alive=[a, b])
    assert await counter(b.url, APPLIED) > 0, "B was given no partition: nothing was rebalanced"

    # B leaves: A takes its partitions back, and with them customers B moved on since A last saw them.
    await in_thread(b.stop)
    await produce_events(faults.bootstrap, ORDERS_PURCHASES, parts[3])
    await caught_up(faults.bootstrap, topic_group, timeout=120, alive=[a])

    held = await stored_classifications(faults.mongodb_url, database)
    problems = differences(plan, held)
    assert not problems, f"{len(problems)} customers differ from a clean run, e.g. {problems[:5]}"
    sample = random.Random(unique).sample(plan.customers, 20)
    assert not differences(plan.only(sample), await classifications(a.url, sample))
