"""Account managers and return visits on the real broker and store: the rule gives VIP and
custom-needs customers a manager (published on crm.account-managers.v1), a person changes it over
HTTP with an audit record, a managed customer's complaint goes to the manager first, and a due
return visit becomes a task in the manager's queue whose outcome is published as an interaction.

Each test has a staff directory of its own with account managers no other test uses.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.complaints.app import build_app
from shared.clock import FixedClock
from shared.contract import dlq
from shared.contract.topics import (
    CRM_ACCOUNT_MANAGERS,
    CRM_CARE_TASKS,
    CRM_CUSTOMER_TIERS,
    CRM_CUSTOMERS,
    CRM_INTERACTIONS,
)
from tests.helpers import api_key, consume_all, envelope, eventually, produce
from tests.integration.complaints.test_service import (
    MONDAY,
    READER,
    WRITER,
    auth,
    body,
    settings,
    started,
)

pytestmark = pytest.mark.integration
NO_SCOPE, NO_SCOPE_KEY = api_key("elsewhere", "customers:read")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def staff_file(tmp_path: Path, unique: str) -> Path:
    """Team care (one agent) and team accounts: an East China account manager and one for anyone."""
    def person(who: str, role: str, **more: Any) -> dict[str, Any]:
        return {"id": f"{who}-{unique}", "name": f"{who.title()} {unique}", "role": role,
                "email": f"{who}-{unique}@example.com", "timezone": "Asia/Shanghai",
                "hours": [{"days": WEEKDAYS, "start": "09:00", "end": "18:00"}], **more}

    path = tmp_path / "staff.yaml"
    path.write_text(yaml.safe_dump({
        "routing": {"default_team": "care"},
        "teams": [{"name": "care", "supervisor": f"sup-{unique}", "assign": "agent"},
                  {"name": "accounts", "manager": f"mgr-{unique}", "assign": "team"}],
        "staff": [person("agent", "agent", team="care"),
                  person("east", "agent", team="accounts", account_manager=True, regions=["East China"]),
                  person("any", "agent", team="accounts", account_manager=True),
                  person("sup", "supervisor", team="care", manager=f"mgr-{unique}"),
                  person("mgr", "manager")]}))
    return path


def classification(customer: str, vip: str, at: Any = MONDAY) -> dict[str, Any]:
    return envelope("customer.classification", customer, {
        "vip": vip, "value_tier": "high", "policy_version": "v1", "updated_at": at.isoformat(),
        "metrics": {"currency": "CNY", "spend_12m": "50000.00", "orders_12m": 30}}, time_=at)


def profile(customer: str, version: int, **fields: Any) -> dict[str, Any]:
    return envelope("customer.profile.changed", customer, {"status": "active", "version": version, **fields},
                    time_=MONDAY)


async def manager_events(infra: dict[str, str], customer: str, count: int) -> list[dict[str, Any]]:
    records = await consume_all(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_ACCOUNT_MANAGERS,
                                until=lambda rs: len({r.value for r in rs if r.key == customer.encode()}) >= count)
    seen: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.key == customer.encode() and r.value:
            event = json.loads(r.value)
            seen.setdefault(event["id"], event)
    return list(seen.values())


async def test_the_rule_gives_vips_and_custom_needs_a_manager_and_a_person_changes_it_with_an_audit_record(
        infra: dict[str, str], unique: str, tmp_path: Path) -> None:
    bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]
    vip, custom, regular = f"V-{unique}", f"N-{unique}", f"R-{unique}"
    east, anyone = f"east-{unique}", f"any-{unique}"
    config = settings(unique, staff_file=str(staff_file(tmp_path, unique)))
    config = config.model_copy(update={"api_keys": (*config.api_keys, NO_SCOPE_KEY)})
    async with started(build_app(config, clock=FixedClock(MONDAY))) as client:
        async def manager_of(customer: str) -> str | None:
            return (await client.get(f"/accounts/{customer}", headers=auth(READER))).json()["manager_id"]

        # An East China customer with custom needs: both managers serve them, neither has anyone (ties by id).
        await produce(bootstrap, CRM_CUSTOMERS, [
            (custom.encode(), profile(custom, 1, needs="standard", region="East China")),
            (custom.encode(), profile(custom, 2, needs="custom", region="East China", industry="retail"))])
        assert await eventually(lambda: manager_of(custom)) == anyone
        # A VIP from elsewhere: only the unrestricted manager serves them, though they have one already.
        await produce(bootstrap, CRM_CUSTOMERS, [(vip.encode(), profile(vip, 1, region="West China"))])
        await produce(bootstrap, CRM_CUSTOMER_TIERS, [(vip.encode(), classification(vip, "vip")),
                                                      (regular.encode(), classification(regular, "regular"))])
        assert await eventually(lambda: manager_of(vip)) == anyone
        # An older profile read late (version 1 again) changes nothing; a regular customer gets nobody.
        await produce(bootstrap, CRM_CUSTOMERS, [(custom.encode(), profile(custom, 1, needs="standard"))])
        assert await manager_of(regular) is None

        # A person moves the custom-needs customer to the East China manager, then removes them.
        moved = await client.put(f"/accounts/{custom}/manager", json={"manager_id": east, "reason": "speaks Wu"},
                                 headers=auth())
        same = await client.put(f"/accounts/{custom}/manager", json={"manager_id": east, "reason": "again"},
                                headers=auth())
        removed = await client.put(f"/accounts/{custom}/manager",
                                   json={"manager_id": None, "reason": "left us", "actor": "carol"}, headers=auth())
        refusals = {
            "not a manager": await client.put(f"/accounts/{custom}/manager",
                                              json={"manager_id": f"agent-{unique}", "reason": "x"}, headers=auth()),
            "unknown": await client.put(f"/accounts/{custom}/manager", json={"manager_id": "nobody", "reason": "x"},
                                        headers=auth()),
            "bad id": await client.put(f"/accounts/{custom}/manager", json={"manager_id": "no one!", "reason": "x"},
                                       headers=auth()),
            "no reason": await client.put(f"/accounts/{custom}/manager", json={"manager_id": east}, headers=auth()),
            "long reason": await client.put(f"/accounts/{custom}/manager",
                                            json={"manager_id": east, "reason": "x" * 201}, headers=auth()),
            "extra field": await client.put(f"/accounts/{custom}/manager",
                                            json={"manager_id": east, "reason": "x", "by": "me"}, headers=auth()),
            "bad customer": await client.put("/accounts/not a customer/manager",
                                             json={"manager_id": east, "reason": "x"}, headers=auth()),
        }
        read_only = await client.put(f"/accounts/{custom}/manager", json={"manager_id": east, "reason": "x"},
                                     headers=auth(READER))
        no_scope = await client.get(f"/accounts/{custom}", headers=auth(NO_SCOPE))
        account = (await client.get(f"/accounts/{custom}", headers=auth(READER))).json()
        events = await manager_events(infra, custom, 3)

    assert moved.status_code == 200 and moved.json()["manager_id"] == east
    assert same.status_code == 200 and same.json()["revision"] == 2  # nothing changed, no audit entry
    assert removed.status_code == 200 and removed.json()["manager_id"] is None
    assert {name: r.status_code for name, r in refusals.items()} == dict.fromkeys(refusals, 422)
    assert refusals["not a manager"].json()["detail"][0]["loc"] == ["body", "manager_id"]
    assert (read_only.status_code, no_scope.status_code) == (403, 403)
    assert (account["needs"], account["region"], account["industry"]) == ("custom", "East China", "retail")
    assert [(c["revision"], c["actor"], c["reason"], c["previous"], c["manager"]) for c in account["history"]] == [
        (3, "carol", "left us", east, None), (2, "ann", "speaks Wu", anyone, east),
        (1, "rule", "custom_needs", None, anyone)]
    assert [(e["data"]["revision"], e["data"].get("manager_id"), e["data"].get("previous_manager_id"))
            for e in events] == [(1, anyone, None), (2, east, anyone), (3, None, east)]
    assert events[0]["data"]["manager_name"] == f"Any {unique}" and events[0]["type"] == "customer.account_manager.changed"


async def test_a_managed_customers_complaint_goes_to_the_manager_on_duty_and_otherwise_as_any_other(
        infra: dict[str, str], unique: str, tmp_path: Path) -> None:
    customer, east = f"C-{unique}", f"east-{unique}"
    clock = FixedClock(MONDAY)  # Monday 09:00: everybody is on duty
    async with started(build_app(settings(unique, staff_file=str(staff_file(tmp_path, unique))), clock=clock)) as client:
        before = (await client.post("/complaints", json=body(customer), headers=auth())).json()
        await client.put(f"/accounts/{customer}/manager", json={"manager_id": east, "reason": "key account"},
                         headers=auth())
        managed = (await client.post("/complaints", json=body(customer), headers=auth())).json()
        clock.advance(timedelta(hours=10))  # 19:00: the manager has gone home
        evening = (await client.post("/complaints", json=body(customer), headers=auth())).json()
        queue = (await client.get(f"/queues/agents/{east}", headers=auth(READER))).json()
    assert (before["assignee"], before["team"]) == (f"agent-{unique}", "care")
    assert (managed["assignee"], managed["team"]) == (east, "accounts")
    assert (evening["assignee"], evening["team"]) == (None, "care")  # nobody of care on duty either
    assert [i["complaint_id"] for i in queue["items"]] == [managed["complaint_id"]] and queue["open"] == 1


async def test_a_due_return_visit_is_a_task_in_the_managers_queue_whose_outcome_becomes_an_interaction(
        infra: dict[str, str], unique: str, tmp_path: Path) -> None:
    bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]
    customer, stranger, anyone = f"C-{unique}", f"S-{unique}", f"any-{unique}"
    visit_id = f"return_visit:2026-03-02:{customer}"
    due = envelope("care.return_visit.due", customer, {"visit_id": visit_id, "due_on": "2026-03-02",
                                                       "cadence_days": 30, "manager_id": anyone}, time_=MONDAY)
    unmanaged = envelope("care.return_visit.due", stranger, {"visit_id": f"return_visit:2026-03-02:{stranger}",
                                                             "due_on": "2026-03-02", "cadence_days": 30}, time_=MONDAY)
    broken = envelope("care.return_visit.due", stranger, {"visit_id": "x", "due_on": "soon", "cadence_days": 30},
                      time_=MONDAY)
    clock = FixedClock(MONDAY + timedelta(hours=1))
    app = build_app(settings(unique, staff_file=str(staff_file(tmp_path, unique))), clock=clock)
    async with started(app) as client:
        await produce(bootstrap, CRM_CUSTOMER_TIERS, [(customer.encode(), classification(customer, "vip"))])
        await eventually(lambda: _manager(client, customer, anyone))
        await produce(bootstrap, CRM_CARE_TASKS, [(customer.encode(), due), (customer.encode(), due),
                                                  (stranger.encode(), unmanaged), (stranger.encode(), broken)])
        task = await eventually(lambda: _found(client, f"/tasks/{visit_id}"))
        queue = (await client.get(f"/queues/agents/{anyone}", headers=auth(READER))).json()
        url = f"/tasks/{visit_id}/outcome"
        outcome = {"outcome": "completed", "channel": "visit", "summary": "Renewal agreed", "satisfaction": 5}
        refusals = {name: await client.post(url, json={**outcome, **change}, headers=auth()) for name, change in {
            "bad outcome": {"outcome": "maybe"}, "bad channel": {"channel": "pigeon"}, "no summary": {"summary": ""},
            "long summary": {"summary": "x" * 2001}, "satisfaction 6": {"satisfaction": 6},
            "satisfaction text": {"satisfaction": "5"}, "extra": {"mood": "good"}}.items()}
        unknown = await client.post("/tasks/return_visit:2026-01-01:nobody/outcome", json=outcome, headers=auth())
        read_only = await client.post(url, json=outcome, headers=auth(READER))
        done = await client.post(url, json=outcome, headers=auth())
        repeated = await client.post(url, json=outcome, headers=auth(WRITER))
        other = await client.post(url, json={**outcome, "outcome": "declined"}, headers=auth())
        after = (await client.get(f"/queues/agents/{anyone}", headers=auth(READER))).json()
        stored = await app.state.accounts.repo.tasks.find_one({"_id": visit_id})
        letters = await consume_all(bootstrap, dlq(CRM_CARE_TASKS),
                                    until=lambda rs: sum(r.key == stranger.encode() for r in rs) >= 2)
        records = await consume_all(bootstrap, CRM_INTERACTIONS,
                                    until=lambda rs: any(r.key == customer.encode() for r in rs))

    assert (task["assignee"], task["status"], task["due_on"], task["cadence_days"]) == (anyone, "open", "2026-03-02", 30)
    assert task["due_at"] == "2026-03-03T10:00:00Z"  # two working days (of 7.5 h) after Monday 09:00 Shanghai
    assert [(i["kind"], i.get("task_id")) for i in queue["items"]] == [("return_visit", visit_id)]
    assert queue["tasks"] == 1 and queue["open"] == 0
    assert {name: r.status_code for name, r in refusals.items()} == dict.fromkeys(refusals, 422)
    assert (unknown.status_code, read_only.status_code) == (404, 403)
    assert done.status_code == 200 and done.json()["status"] == "done" and done.json()["done_by"] == "ann"
    assert repeated.status_code == 200 and repeated.json()["done_at"] == done.json()["done_at"]
    assert other.status_code == 409 and other.json()["detail"]["error"] == "task_done"
    assert after["items"] == [] and after["tasks"] == 0
    assert "Renewal agreed" not in json.dumps(stored, default=str)  # sealed at rest
    assert sorted(dict(r.headers)["x-error"].decode() for r in letters if r.key == stranger.encode()) == [
        "invalid_data", "not_managed"]
    [interaction] = {json.loads(r.value)["id"]: json.loads(r.value) for r in records
                     if r.key == customer.encode()}.values()
    assert interaction["data"] == {"interaction_id": visit_id, "kind": "return_visit", "channel": "visit",
                                   "direction": "outbound", "summary": "Renewal agreed", "satisfaction": 5}


async def _manager(client: Any, customer: str, expected: str) -> bool:
    return (await client.get(f"/accounts/{customer}", headers=auth(READER))).json()["manager_id"] == expected


async def _found(client: Any, url: str) -> dict[str, Any] | None:
    response = await client.get(url, headers=auth(READER))
    return response.json() if response.status_code == 200 else None
