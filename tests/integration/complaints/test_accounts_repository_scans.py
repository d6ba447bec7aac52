"""The account managers' and return visits' hot paths read no collection whole, however many
accounts and tasks the store holds.

The collections are filled with a few thousand accounts (a few of them managed) and tasks; then
profiles and tiers through Kafka (the rule reads the managers' loads), a change over HTTP, a due
return visit, the manager's queue, an outcome and the outbox pass run, and the embedded store's
PostgreSQL counts every whole-table read (``tests/scans.py``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from services.complaints import visits
from services.complaints.accounts import Account, Change
from services.complaints.accounts_repository import AccountsRepository
from services.complaints.app import build_app
from services.complaints.domain import Rules
from shared.clock import FixedClock
from shared.contract.topics import CRM_CARE_TASKS, CRM_CUSTOMER_TIERS, CRM_CUSTOMERS
from tests.helpers import envelope, eventually, produce
from tests.integration.complaints.test_accounts import classification, profile, staff_file
from tests.integration.complaints.test_service import MONDAY, READER, auth, settings, started
from tests.scans import scanned, settled

pytestmark = pytest.mark.integration
FILLED = 3000


async def test_the_rule_changes_queues_and_outcomes_read_no_collection_whole(infra: dict[str, str], unique: str,
                                                                            tmp_path: Path) -> None:
    bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]
    custom, vip, anyone, east = f"N-{unique}", f"V-{unique}", f"any-{unique}", f"east-{unique}"
    config = settings(unique, staff_file=str(staff_file(tmp_path, unique)))
    app = build_app(config, clock=FixedClock(MONDAY + timedelta(hours=1)))
    async with started(app) as client:
        repo, rules = app.state.accounts.repo, app.state.workflow.rules
        # Every customer's profile fields and a past return visit; one in fifty managed, with an open visit.
        for start in range(0, FILLED, 100):
            await asyncio.gather(*(fill(repo, rules, unique, i, anyone if i % 100 else east)
                                   for i in range(start, start + 100)))
        await app.state.accounts.republish()
        before = await settled(config.database_name)

        await produce(bootstrap, CRM_CUSTOMERS, [(custom.encode(), profile(custom, 1, needs="custom",
                                                                          region="East China"))])
        await produce(bootstrap, CRM_CUSTOMER_TIERS, [(vip.encode(), classification(vip, "vip"))])
        await eventually(lambda: _managed(client, custom))
        await eventually(lambda: _managed(client, vip))
        moved = await client.put(f"/accounts/{custom}/manager", json={"manager_id": east, "reason": "asked"},
                                 headers=auth())
        assert moved.status_code == 200
        visit_id = f"return_visit:2026-03-02:{custom}"
        due = envelope("care.return_visit.due", custom, {"visit_id": visit_id, "due_on": "2026-03-02",
                                                         "cadence_days": 30}, time_=MONDAY)
        await produce(bootstrap, CRM_CARE_TASKS, [(custom.encode(), due)])
        await eventually(lambda: repo.load_task(visit_id))
        queue = (await client.get(f"/queues/agents/{east}", headers=auth(READER))).json()
        assert queue["tasks"] == FILLED // 100 + 1
        outcome = {"outcome": "completed", "channel": "call", "summary": "All well"}
        assert (await client.post(f"/tasks/{visit_id}/outcome", json=outcome, headers=auth())).status_code == 200
        await app.state.accounts.republish()
        found = scanned(before, await settled(config.database_name))
        # The complaints' own collections have their scan test (test_repository_scans.py).
        assert {name: n for name, n in found.items() if name in ("accounts", "tasks")} == {}


async def fill(repo: AccountsRepository, rules: Rules, unique: str, i: int, manager: str) -> None:
    customer = f"F-{unique}-{i}"
    await repo.put_profile(customer, {"needs": "standard", "region": "East China", "industry": None}, 1)
    managed = i % 50 == 0
    if managed:
        change = Change(revision=1, at=MONDAY, actor="rule", reason="vip", manager=manager)
        account = Account(customer_id=customer, manager=manager, manager_name="M", revision=1, history=[change])
        assert await repo.write_change(account, [], expected_revision=0)
    visit = visits.new_visit(visit_id=f"return_visit:2026-01-30:{customer}", customer_id=customer,
                             manager=manager if managed else f"gone-{unique}", due_on=MONDAY.date(), cadence_days=30,
                             at=MONDAY, calendar=rules.calendar, days=2)
    if not managed:
        visit = visits.record_outcome(visit, outcome="completed", channel="call", summary="Fine", satisfaction=None,
                                      actor="x", now=MONDAY) or visit
    assert await repo.add_task(visit)


async def _managed(client: object, customer: str) -> bool:
    account = (await client.get(f"/accounts/{customer}", headers=auth(READER))).json()  # type: ignore[attr-defined]
    return account["manager_id"] is not None
