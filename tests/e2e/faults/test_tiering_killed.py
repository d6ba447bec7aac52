"""kill -9 of the tiering service in the middle of a 50,000-purchase replay."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime
from typing import Any

import pytest

from services.tiering.domain import NAMESPACE
from services.tiering.handlers import SUBSCRIBED
from shared.contract.topics import CRM_TIER_CHANGES, ORDERS_PURCHASES

from .support import (
    FaultInfra,
    caught_up,
    classifications,
    counter,
    differences,
    in_thread,
    produce_events,
    read_topic,
    replay,
    skip_backlog,
    stored_classifications,
    wait_for,
)

pytestmark = pytest.mark.e2e


def change_ids(records: list[Any]) -> dict[tuple[Any, ...], set[str]]:
    """The ids published per change: customer, dimension, from, to, and the cause (the trace of
    the purchase that caused it, carried as a header)."""
    ids: dict[tuple[Any, ...], set[str]] = {}
    for record in records:
        event = json.loads(record.value)
        d = event["data"]
        cause = dict(record.headers).get("traceparent")
        ids.setdefault((event["subject"], d["dimension"], d["previous"], d["current"], cause), set()).add(event["id"])
    return ids


def deterministic_id(event: dict[str, Any]) -> str:
    d = event["data"]
    at = datetime.fromisoformat(d["effective_at"]).isoformat()
    return str(uuid.uuid5(NAMESPACE, f"{event['subject']}|{d['dimension']}|{d['previous']}|{d['current']}|{at}"))


async def test_tiering_killed_mid_replay_ends_as_a_clean_run_and_publishes_each_change_under_one_id(
        faults: FaultInfra, launch: Any, unique: str) -> None:
    plan = replay(f"K{unique}", customers=3_000, purchases=50_000)
    group, database = f"faults-kill-{unique}", f"faults_kill_{unique}"
    await skip_backlog(faults.bootstrap, group, SUBSCRIBED)
    await produce_events(faults.bootstrap, ORDERS_PURCHASES, plan.events)
    tiering = launch("tiering", KAFKA_GROUP_ID=group, MONGODB_DATABASE=database, TIERING_REFRESH_INTERVAL_S="0")
    await in_thread(tiering.start)

    async def well_under_way() -> bool:
        return await counter(tiering.url, "carecrm_tiering_events_total", kind="purchase") >= 20_000

    await wait_for(well_under_way, timeout=150, what="20,000 purchases applied")
    tiering.kill()  # kill -9: no shutdown hook, nothing flushed or committed
    await in_thread(tiering.start)
    await caught_up(faults.bootstrap, f"{group}.{ORDERS_PURCHASES}", timeout=180, alive=[tiering])

    held = await stored_classifications(faults.mongodb_url, database)
    problems = differences(plan, held)
    assert not problems, f"{len(problems)} customers differ from a clean run, e.g. {problems[:5]}"
    # The API answers from the same revisions (a sample: each read scans the collection).
    sample = random.Random(unique).sample(plan.customers, 20)
    assert not differences(plan.only(sample), await classifications(tiering.url, sample))

    prefix = f"K{unique}-".encode()
    records = await read_topic(faults.bootstrap, CRM_TIER_CHANGES, lambda r: r.key.startswith(prefix))
    assert len({r.key for r in records}) == len(plan.customers)  # every customer was classified
    wrong = [e for e in (json.loads(r.value) for r in records) if e["id"] != deterministic_id(e)]
    assert not wrong, f"{len(wrong)} changes not under their deterministic id, e.g. {wrong[:2]}"
    twice = {change: ids for change, ids in change_ids(records).items() if len(ids) > 1}
    assert not twice, f"{len(twice)} changes published under more than one id, e.g. {list(twice.items())[:3]}"
