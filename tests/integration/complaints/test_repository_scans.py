"""The complaints service's hot paths read no collection whole, however many complaints it holds.

The collections are filled with a few thousand documents, then intake (through Kafka), tiers,
survey feedback, erasure, scheduler passes that warn and the agents' routine API calls run; the
embedded store's PostgreSQL counts every whole-table read (``tests/scans.py``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from services.complaints import domain
from services.complaints.app import build_app
from services.complaints.repository import QUEUE_KEYS
from shared.clock import FixedClock
from shared.contract.topics import CRM_COMPLAINT_INTAKE, CRM_CUSTOMER_TIERS, CRM_CUSTOMERS, CRM_INTERACTIONS
from tests.helpers import envelope, eventually, produce
from tests.integration.complaints.test_service import MONDAY, READER, auth, body, settings, started, submitted
from tests.scans import scanned, settled

pytestmark = pytest.mark.integration
FILLED = 3000
#: The clock starts when the filled complaints' first-response warnings (18 h after opening, one a
#: minute) are about to begin: a pass then finds a few complaints due, not thousands.
START = MONDAY + timedelta(hours=18)


def filler(unique: str, i: int, rules: domain.Rules) -> domain.Complaint:
    fields = {k: v for k, v in body("").items() if k != "customer_id"}
    complaint, _ = domain.open_complaint(
        complaint_id=f"F-{unique}-{i}", customer_id=f"F-{unique}-{i % 1000}", fields=fields, tier=None,
        opened_at=MONDAY + timedelta(minutes=i + 1), rules=rules, source=f"fill/{i}")
    if i % 50 == 0:  # a few in other states and hands, as in any queue
        complaint.status, complaint.assignee = "investigating", "ann"
    return complaint


def staff_file(tmp_path: Path) -> Path:
    """An agent always on duty, so that intake shares complaints out by the agents' loads."""
    always = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "24:00"}]
    person = {"timezone": "Asia/Shanghai", "hours": always}
    path = tmp_path / "staff.yaml"
    path.write_text(yaml.safe_dump({
        "routing": {"default_team": "care"},
        "teams": [{"name": "care", "supervisor": "sup", "assign": "agent"}],
        "staff": [{"id": "agent", "name": "Agent", "role": "agent", "team": "care", "email": "a@example.com", **person},
                  {"id": "sup", "name": "Sup", "role": "supervisor", "manager": "mgr", "email": "s@example.com",
                   **person},
                  {"id": "mgr", "name": "Mgr", "role": "manager", "email": "m@example.com", **person}]}))
    return path


async def test_intake_scheduler_and_agent_calls_read_no_collection_whole(infra: dict[str, str], unique: str,
                                                                         tmp_path: Path) -> None:
    bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]
    customer = f"C-{unique}"
    clock = FixedClock(START)
    config = settings(unique, staff_file=str(staff_file(tmp_path)))
    app = build_app(config, clock=clock)
    async with started(app) as client:
        repo, workflow, scheduler = app.state.repo, app.state.workflow, app.state.scheduler
        # The start's one-off pass over complaints stored before the work queues is done first.
        await eventually(lambda: repo.state.find_one({"_id": QUEUE_KEYS}))
        taken = await repo.insert_new([(filler(unique, i, workflow.rules), []) for i in range(FILLED)])
        assert not taken
        for i in range(1000):
            await repo.put_tiers([(f"F-{unique}-{i}", "high" if i % 3 else None, MONDAY)])
        await scheduler.run_once()  # the first pass after filling: the scheduler resumes from here
        before = await settled(config.database_name)

        # Intake, tiers, survey feedback and erasure through Kafka.
        tier = envelope("customer.classification", customer, {
            "vip": "vip", "value_tier": "high", "policy_version": "v1", "updated_at": START.isoformat(),
            "metrics": {"currency": "CNY", "spend_12m": "50000.00", "orders_12m": 30}}, time_=START)
        await produce(bootstrap, CRM_CUSTOMER_TIERS, [(customer.encode(), tier)])
        await eventually(lambda: _is(repo.tier(customer), "vip"))
        intake = [submitted(customer, time_=START, complaint_id=f"K-{unique}-{n}") for n in range(5)]
        await produce(bootstrap, CRM_COMPLAINT_INTAKE, [(customer.encode(), m) for m in (*intake, intake[0])])
        for n in range(5):
            await eventually(lambda n=n: repo.get(f"K-{unique}-{n}"))

        # The agents' routine calls.
        url = f"/complaints/K-{unique}-0"
        assert (await client.get(url, headers=auth(READER))).json()["priority"] == "p2"  # the vip tier
        assert (await client.post(f"{url}/assignment", json={"assignee": "ann"}, headers=auth())).status_code == 200
        for step in ({"to": "acknowledged"}, {"to": "investigating"}):
            assert (await client.post(f"{url}/transitions", json=step, headers=auth())).status_code == 200
        assert (await client.post(f"{url}/comments", json={"text": "On it"}, headers=auth())).status_code == 200
        queue = (await client.get("/complaints", params={"status": "investigating"}, headers=auth(READER))).json()
        mine = (await client.get("/complaints", params={"assignee": "ann"}, headers=auth(READER))).json()
        theirs = (await client.get("/complaints", params={"customer": customer}, headers=auth(READER))).json()
        assert f"K-{unique}-0" in {c["complaint_id"] for c in queue["items"]} and queue["count"] == FILLED // 50 + 1
        assert mine["count"] == FILLED // 50 + 1 and theirs["count"] == 5
        # The work queues: a person's and a team's open complaints, by due time.
        ann = (await client.get("/queues/agents/ann", headers=auth(READER))).json()
        agent = (await client.get("/queues/agents/agent", headers=auth(READER))).json()
        care = (await client.get("/queues/teams/care", headers=auth(READER))).json()
        assert ann["open"] == FILLED // 50 + 1 and agent["open"] == 4 and care["open"] == 5
        assert ann["items"][0]["due_at"] <= ann["items"][-1]["due_at"]
        assert (await client.get("/staff", headers=auth(READER))).status_code == 200
        resolve = {"to": "resolved", "resolution_summary": "Refunded", "root_cause": "logistics"}
        assert (await client.post(f"{url}/transitions", json=resolve, headers=auth())).status_code == 200
        created = await client.post("/complaints", json=body(customer), headers=auth())
        assert created.status_code == 201
        survey = envelope("customer.interaction.recorded", customer, {
            "interaction_id": f"S-{unique}", "kind": "survey_response", "channel": "sms", "direction": "inbound",
            "satisfaction": 5}, time_=START)
        await produce(bootstrap, CRM_INTERACTIONS, [(customer.encode(), survey)])
        await eventually(lambda: _status(repo, f"K-{unique}-0", "closed"))

        # Scheduler passes as time goes on: three of the filled complaints fall due and are warned.
        for _ in range(3):
            clock.advance(timedelta(minutes=1))
            await scheduler.run_once()
        warned = [await repo.get(f"F-{unique}-{i}") for i in range(3)]
        assert all(any(t.kind == "warned" for t in c.timers) for c in warned if c)

        erased = envelope("customer.erased", customer, {"erased_at": START.isoformat()}, time_=START)
        await produce(bootstrap, CRM_CUSTOMERS, [(customer.encode(), erased)])
        await eventually(lambda: _erased(repo, f"K-{unique}-1"))
        assert scanned(before, await settled(config.database_name)) == {}


async def _is(value: object, expected: object) -> bool:
    return await value == expected  # type: ignore[misc]


async def _status(repo: object, complaint_id: str, status: str) -> bool:
    complaint = await repo.get(complaint_id)  # type: ignore[attr-defined]
    return complaint is not None and complaint.status == status


async def _erased(repo: object, complaint_id: str) -> bool:
    complaint = await repo.get(complaint_id)  # type: ignore[attr-defined]
    return complaint is not None and complaint.erased
