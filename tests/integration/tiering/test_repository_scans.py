"""With thousands of customers stored, the tiering service's hot paths read no collection whole.

The store is filled straight through the service's collections (a revision, history and override
audit per customer, a month of hourly cut-offs), the service starts (its one read of every customer
is at start) and every consumer gets a first batch. Then purchases, refunds and an erasure go
through Kafka, the write-behind flush and the clean-up of superseded revisions run, the scheduler
re-evaluates the customers whose time has come, an override is set, the population is refreshed and
a customer's classification, history and audit are asked for. PostgreSQL's own count of
whole-table reads must not move meanwhile (``tests/scans.py``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from services.tiering import domain
from services.tiering.app import build_app
from services.tiering.classification import classify
from services.tiering.domain import Snapshot
from services.tiering.metrics import Cutoffs, Entry, compute_cutoffs, compute_metrics
from services.tiering.workflow import Workflow
from services.tiering.policy import Policy, default_policy
from services.tiering.repository import CustomerState, Repository, doc_id, history_doc, state_doc
from shared.clock import FixedClock
from shared.contract.topics import CRM_COMPLAINTS, CRM_CUSTOMERS, CRM_INTERACTIONS, ORDERS_PURCHASES
from tests.helpers import envelope, eventually, running
from tests.scans import scanned, settled

from .support import BASE, POLICY_KEY, READ_KEY, WRITE_KEY, profile, purchase, refund, send, settings_for

pytestmark = pytest.mark.integration
CUSTOMERS = 3000
BUYERS, REFUNDERS = 1000, 300  # seeded customers who buy again, and who get a refund
CUTOFF_VERSIONS = 720  # a month of hourly population refreshes
NOW = BASE + timedelta(days=1)


def _ledger(cid: str, i: int) -> dict[str, Entry]:
    """One to four purchases over the past year (order ``O0-<customer>`` always among them)."""
    ledger = {}
    for n in range(1 + i % 4):
        order = f"O{n}-{cid}"
        at = NOW - timedelta(days=1 + (i * 7 + n * 53) % 330, minutes=i % 600)
        ledger[f"p:{order}"] = Entry(f"p:{order}", "purchase", at, 500_00 + (i * 7919 + n * 104_729) % 2_000_000,
                                     order_id=order)
    return ledger


def _state(cid: str, i: int, policy: Policy, cutoffs: Cutoffs) -> tuple[CustomerState, list[Any]]:
    """A classified customer, and the changes its classification made."""
    state = CustomerState(cid)
    state.ledger = _ledger(cid, i)
    state.metrics = compute_metrics(state.ledger.values(), NOW, policy)
    targets = classify(state.metrics, cutoffs, policy, NOW)
    state.snapshot, changes = domain.decide(Snapshot(), targets, state.metrics, cutoffs, policy, NOW, NOW,
                                            immediate=True)
    state.next_eval_at = domain.next_evaluation(state.ledger.values(), state.metrics, state.snapshot, policy, NOW)
    state.rev = 1
    return state, changes


async def _fill(repo: Repository, unique: str) -> list[str]:
    """Thousands of documents in every collection that grows, the way the service writes them."""
    policy = default_policy()
    ids = [f"S{i:05d}-{unique}" for i in range(CUSTOMERS)]
    plain = [compute_metrics(_ledger(cid, i).values(), NOW, policy) for i, cid in enumerate(ids)]
    spends, orders = [m.spend_12m for m in plain], [m.orders_12m for m in plain]
    recencies = [m.recency_days(NOW) or 0 for m in plain]
    versions = [compute_cutoffs(list(spends), orders, recencies, policy,
                                NOW - timedelta(hours=CUTOFF_VERSIONS - v), v) for v in (1, CUTOFF_VERSIONS)]
    await repo.cutoffs.insert_many([{"_id": v, **{**versions[0].to_doc(), "version": v}}
                                    for v in range(1, CUTOFF_VERSIONS)])
    await repo.store_cutoffs(versions[1])
    await repo.store_policy(policy, NOW)
    await repo.activate_policy(policy.version, NOW)

    states, history, audit = [], [], []
    for i, cid in enumerate(ids):
        state, changes = _state(cid, i, policy, versions[1])
        states.append(state_doc(state, policy.version, NOW))
        history.append(history_doc(cid, changes, [c.event_id(cid) for c in changes], False, policy.version))
        if i % 3 == 0:
            audit.append({"_id": str(uuid.uuid4()), "customer_id": cid, "dimension": "value_tier", "action": "set",
                          "actor": "seed", "reason": "key account", "at": NOW - timedelta(days=i % 30),
                          "value": "high", "mode": "floor", "expires_at": None})
    for start in range(0, CUSTOMERS, 1000):
        await repo.customers.insert_many(states[start:start + 1000])
        await repo.history.insert_many(history[start:start + 1000])
    await repo.audit.insert_many(audit)
    return ids


def _applied(workflow: Workflow, kind: str) -> float:
    return sum(s.value for m in workflow.events_in.collect() for s in m.samples
               if s.name.endswith("_total") and s.labels.get("kind") == kind)


async def _reached(workflow: Workflow, **counts: int) -> bool:
    return all(_applied(workflow, kind) >= n for kind, n in counts.items())


async def test_events_the_flush_the_scheduler_and_the_api_read_no_collection_whole(
        infra: dict[str, str], unique: str) -> None:
    clock = FixedClock(NOW)
    settings = await settings_for(unique)
    app = build_app(settings, clock=clock)
    repo: Repository = app.state.repo
    workflow: Workflow = app.state.workflow
    ids = await _fill(repo, unique)
    buyers, refunders, erased = ids[:BUYERS], ids[BUYERS:BUYERS + REFUNDERS], ids[-1]
    overridden, looked_up = ids[-2], ids[-3]  # neither touched by an event: read from the store
    newcomers = [f"N{i}-{unique}" for i in range(100)]
    async with running(app) as client:
        # Start: the one read of every customer, then a first batch for each consumer, so that no
        # consumer joins its group (and re-reads the directory) while the counts run.
        warm = f"W-{unique}"
        await send(infra, CRM_CUSTOMERS, profile(warm, BASE))
        await send(infra, ORDERS_PURCHASES, purchase(warm, f"OW-{unique}", "10.00", BASE))
        await send(infra, CRM_INTERACTIONS, envelope("customer.interaction.recorded", warm, {
            "interaction_id": f"IW-{unique}", "kind": "survey_response", "channel": "web", "direction": "inbound",
            "satisfaction": 4}, time_=BASE))
        await send(infra, CRM_COMPLAINTS, envelope("complaint.opened", warm, {
            "complaint_id": f"KW-{unique}", "status": "received", "priority": "p2"}, time_=BASE))
        await eventually(lambda: _reached(workflow, registered=1, purchase=1, survey=1, complaint=1), timeout=60)
        assert len(workflow.directory) >= CUSTOMERS
        before = await settled(settings.database_name)

        # Events through Kafka: stored customers buy again or get a refund, new ones buy, one is erased.
        await send(infra, ORDERS_PURCHASES,
                   *(purchase(cid, f"ON-{cid}", "880.00", NOW - timedelta(hours=1)) for cid in buyers),
                   *(refund(cid, f"R-{cid}", "1.00", NOW - timedelta(minutes=30), order_id=f"O0-{cid}")
                     for cid in refunders),
                   *(purchase(cid, f"O-{cid}", "120.00", NOW - timedelta(hours=2)) for cid in newcomers))
        await send(infra, CRM_CUSTOMERS, envelope("customer.erased", erased, {"erased_at": NOW.isoformat()},
                                                  time_=NOW))
        await eventually(lambda: _reached(workflow, purchase=1 + BUYERS + len(newcomers), refund=REFUNDERS),
                         timeout=90)
        await eventually(lambda: _absent(client, erased))

        # The write-behind flush, then the clean-up of the revisions it superseded.
        await workflow.flush()
        await workflow.collect_garbage()

        # Two weeks on: the scheduler re-evaluates the customers whose next evaluation has come.
        clock.advance(timedelta(days=14))
        due = sum(1 for when in workflow.planned.values() if when <= clock.now())
        while await workflow.run_due(500):
            pass

        # An override (audited, written at once) and a population refresh.
        put = await client.put(f"/customers/{overridden}/overrides/value_tier", headers={"X-API-Key": WRITE_KEY},
                               json={"value": "high", "reason": "key account"})
        refreshed = await client.post("/population/refresh", headers={"X-API-Key": POLICY_KEY})
        await workflow.flush()
        await workflow.collect_garbage()

        # The routine API calls: a stored customer's classification, a customer's history and audit.
        stored = await client.get(f"/customers/{looked_up}/classification", headers={"X-API-Key": READ_KEY})
        bought = await client.get(f"/customers/{buyers[0]}/classification", headers={"X-API-Key": READ_KEY})
        history = await client.get(f"/customers/{overridden}/tier-history", headers={"X-API-Key": READ_KEY})
        audited = await client.get(f"/customers/{ids[0]}/tier-history", headers={"X-API-Key": READ_KEY})

        assert scanned(before, await settled(settings.database_name)) == {}

        superseded = await repo.customers.find_one({"_id": doc_id(buyers[0], 1)})
    assert due > 0
    assert put.status_code == 200 and put.json()["value_tier"] == "high"
    assert refreshed.status_code == 200 and refreshed.json()["cutoffs_version"] == CUTOFF_VERSIONS + 1
    assert stored.status_code == 200 and stored.json()["customer_id"] == looked_up
    assert bought.json()["metrics"]["lifetime_orders"] == 2  # seeded with one purchase, and one more
    assert superseded is None  # the clean-up deleted the revision the purchase replaced
    assert [a["action"] for a in history.json()["overrides"]] == ["set"]
    assert history.json()["changes"] and audited.json()["overrides"][0]["actor"] == "seed"



async def _absent(client: Any, customer: str) -> bool:
    response = await client.get(f"/customers/{customer}/classification", headers={"X-API-Key": READ_KEY})
    return response.status_code == 404
