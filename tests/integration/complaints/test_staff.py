"""Escalation reaches people, on the real broker and store: a breach reassigns the complaint to the
team's supervisor, whom the notifications service mails once; the work queues read by HTTP.

Each test has a staff directory of its own (a file, as in production) with addresses no other test
uses, and its own SMTP sink.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.complaints.app import build_app
from services.notifications.app import build_app as notifications_app
from services.notifications.settings import NotificationsSettings
from shared.clock import FixedClock
from shared.contract.topics import CRM_COMPLAINTS
from tests.doubles import smtp_server
from tests.helpers import api_key, eventually, produce, running
from tests.integration.complaints.test_service import (
    MONDAY,
    READER,
    auth,
    body,
    events_of,
    settings,
    started,
    types,
)
from tests.integration.notifications.conftest import skip_backlog

pytestmark = pytest.mark.integration
CONTACTS, CONTACTS_KEY = api_key("contacts", "complaints:read", "pii:read")
NO_SCOPE, NO_SCOPE_KEY = api_key("elsewhere", "notifications:read")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def staff_file(tmp_path: Path, unique: str) -> tuple[Path, dict[str, str]]:
    """Team care (one agent, a supervisor on duty from 08:30) and team billing (its own queue)."""
    emails = {who: f"{who}-{unique}@example.com" for who in ("agent", "sup", "mgr")}

    def person(who: str, role: str, start: str, end: str, **more: Any) -> dict[str, Any]:
        return {"id": f"{who}-{unique}", "name": f"{who.title()} {unique}", "role": role, "email": emails[who],
                "timezone": "Asia/Shanghai", "hours": [{"days": WEEKDAYS, "start": start, "end": end}], **more}

    doc = {
        "routing": {"default_team": "care", "categories": {"billing": "billing"}},
        "teams": [{"name": "care", "supervisor": f"sup-{unique}", "assign": "agent"},
                  {"name": "billing", "manager": f"mgr-{unique}", "assign": "team"}],
        "staff": [person("agent", "agent", "09:00", "18:00", team="care", locale="zh-CN"),
                  person("sup", "supervisor", "08:30", "18:30", team="care", manager=f"mgr-{unique}", locale="en-US"),
                  person("mgr", "manager", "00:00", "24:00")],
    }
    path = tmp_path / "staff.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, emails


async def test_a_breach_reassigns_to_the_supervisor_whom_the_notifications_service_mails_exactly_once(
        infra: dict[str, str], unique: str, tmp_path: Path) -> None:
    path, emails = staff_file(tmp_path, unique)
    customer, supervisor = f"C-{unique}", f"sup-{unique}"
    clock = FixedClock(MONDAY)  # Monday 09:00 in Shanghai: the agent is on duty
    complaints = build_app(settings(unique, staff_file=str(path)), clock=clock)
    with smtp_server() as (sink, port):
        notify = NotificationsSettings(
            mongodb_database=f"test_notifications_{unique}", kafka_group_id=f"test-notifications-{unique}",
            smtp_port=port, webhook_url="", channel_backoff_s=0.05, scheduler_interval_s=3600)
        await skip_backlog(notify)
        notifications = notifications_app(notify)
        async with started(complaints) as client, running(notifications):
            created = (await client.post("/complaints", json=body(customer), headers=auth())).json()
            complaint_id, url = created["complaint_id"], f"/complaints/{created['complaint_id']}"
            assert (created["assignee"], created["team"]) == (f"agent-{unique}", "care")

            async def holder(expected: str) -> dict | None:
                found = (await client.get(url, headers=auth(READER))).json()
                return found if found["assignee"] == expected else None

            clock.advance(timedelta(hours=18))  # Tuesday 03:00: the first-response warning, nobody on duty
            await eventually(lambda: _async(sink.to(emails["agent"])))
            clock.advance(timedelta(hours=6, minutes=1))  # Tuesday 09:01: breached; the supervisor is in
            breached = await eventually(lambda: holder(supervisor))
            [mail] = await eventually(lambda: _async(sink.to(emails["sup"])))

            # The alert again (a redelivery) and then a marker behind it in the same partition: once
            # the marker is mailed, the repeat was handled, and it mailed nobody.
            events = await events_of(infra, customer, until=lambda es: types(es).count("staff_alert") >= 2)
            alert = [e for e in events if e["type"] == "complaint.staff_alert"][-1]
            to_marker = {**alert["data"]["alert"], "email": f"m-{unique}@example.com"}
            marker = {**alert, "id": f"marker-{unique}", "data": {**alert["data"], "alert": to_marker}}
            await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_COMPLAINTS,
                          [(customer.encode(), alert), (customer.encode(), marker)])
            await eventually(lambda: _async(sink.to(f"m-{unique}@example.com")))
            record = await notifications.state.repo.staff_alert(f"staff_alert:{alert['id']}")
            stored = await notifications.state.repo.staff_alerts.find_one({"_id": f"staff_alert:{alert['id']}"})

    assert breached["escalation_level"] == 1 and breached["escalated_to"] == "supervisor"
    assert breached["team"] == "care" and breached["priority"] == "p2"
    assert types(events) == ["opened", "sla_warning", "staff_alert", "sla_breached", "escalated", "staff_alert"]
    warning_alert, escalation, escalation_alert = events[2], events[4], events[5]
    assert warning_alert["data"]["alert"]["staff_id"] == f"agent-{unique}"
    assert warning_alert["data"]["alert"]["on_duty"] is False  # 03:00: nobody of the team was on duty
    assert escalation["data"]["changes"]["assignee"] == [f"agent-{unique}", supervisor]
    assert escalation["data"]["changes"]["on_duty"] is True
    assert escalation_alert["data"]["alert"] | {"due_at": None} == {
        "kind": "escalated", "staff_id": supervisor, "staff_name": f"Sup {unique}", "role": "supervisor",
        "rung": "supervisor", "on_duty": True, "email": emails["sup"], "locale": "en-US", "timezone": "Asia/Shanghai",
        "reason": "first_response_breached", "previous_assignee": f"agent-{unique}", "due_at": None}
    # Exactly one e-mail to the supervisor, in their language, with the complaint and why.
    assert len(sink.to(emails["sup"])) == 1
    assert mail["Subject"] == f"Escalated to you: complaint {complaint_id} (p2)"
    text = mail.get_content()
    assert "first response overdue" in text and f"It was with agent-{unique}." in text
    assert "unsubscribe" not in text
    assert mail["X-Idempotency-Key"] == f"staff_alert:{alert['id']}"
    assert record is not None and record["status"] == "sent" and record["channel"] == "email"
    assert record["email"] == emails["sup"]  # opened again from its sealed form
    assert emails["sup"] not in json.dumps(stored, default=str)  # sealed at rest


async def test_the_queues_list_open_complaints_by_nearest_due_time_and_need_the_read_scope(
        infra: dict[str, str], unique: str, tmp_path: Path) -> None:
    path, emails = staff_file(tmp_path, unique)
    agent, customer = f"agent-{unique}", f"C-{unique}"
    clock = FixedClock(MONDAY)
    config = settings(unique, staff_file=str(path))
    config = config.model_copy(update={"api_keys": (*config.api_keys, CONTACTS_KEY, NO_SCOPE_KEY)})
    async with started(build_app(config, clock=clock)) as client:
        async def submit(**fields: Any) -> str:
            response = await client.post("/complaints", json=body(customer, **fields), headers=auth())
            assert response.status_code == 201, response.text
            return response.json()["complaint_id"]

        regular = await submit()  # first response due Tuesday 09:00
        clock.advance(timedelta(hours=1))
        later = await submit()  # due Tuesday 10:00
        critical = await submit(severity="critical")  # p1: first response due Monday 12:00
        waiting = await submit()
        for step in ("acknowledged", "investigating", "waiting_on_customer"):
            await client.post(f"/complaints/{waiting}/transitions", json={"to": step}, headers=auth())
        done = await submit()
        for step in ({"to": "acknowledged"}, {"to": "investigating"},
                     {"to": "resolved", "resolution_summary": "Refunded", "root_cause": "logistics"}):
            await client.post(f"/complaints/{done}/transitions", json=step, headers=auth())
        billing = await submit(category="billing")

        mine = (await client.get(f"/queues/agents/{agent}", headers=auth(READER))).json()
        team = (await client.get("/queues/teams/care", headers=auth(READER))).json()
        first_two = (await client.get("/queues/teams/care", params={"limit": 2}, headers=auth(READER))).json()
        billing_queue = (await client.get("/queues/teams/billing", headers=auth(READER))).json()
        unknown_team = await client.get("/queues/teams/nowhere", headers=auth(READER))
        nobodys = (await client.get("/queues/agents/nobody", headers=auth(READER))).json()
        directory = (await client.get("/staff", headers=auth(READER))).json()
        contacts = (await client.get("/staff", headers=auth(CONTACTS))).json()
        refused = {
            "no key": [(await client.get(u)).status_code for u in (f"/queues/agents/{agent}", "/queues/teams/care",
                                                                   "/staff")],
            "no scope": [(await client.get(u, headers=auth(NO_SCOPE))).status_code
                         for u in (f"/queues/agents/{agent}", "/queues/teams/care", "/staff")],
        }

    expected = [critical, regular, later, waiting]  # by due time; waiting on the customer: no due time, last
    assert [i["complaint_id"] for i in mine["items"]] == expected and mine["open"] == 4
    assert [i["complaint_id"] for i in team["items"]] == expected
    assert [i["complaint_id"] for i in first_two["items"]] == expected[:2] and first_two["open"] == 4
    top = team["items"][0]
    assert top | {"due_at": None, "opened_at": None} == {
        "kind": "complaint", "complaint_id": critical, "customer_id": customer, "priority": "p1", "customer_tier": None,
        "status": "received", "assignee": agent, "team": "care", "next_target": "first_response", "due_at": None,
        "warned": False, "breached": False, "escalation_level": 0, "escalated_to": "handler", "opened_at": None}
    assert top["due_at"].startswith("2026-03-02T04:00:00")  # 12:00 in Shanghai, two hours after opening
    assert team["items"][-1]["next_target"] is None and team["items"][-1]["due_at"] is None
    assert [i["complaint_id"] for i in billing_queue["items"]] == [billing]
    assert billing_queue["items"][0]["assignee"] is None  # billing works from its team queue
    assert unknown_team.status_code == 404 and nobodys["items"] == []
    people = {p["id"]: p for p in directory["staff"]}
    assert people[agent]["on_duty"] is True and people[agent]["team"] == "care"
    assert "email" not in people[agent] and not any(e in json.dumps(directory) for e in emails.values())
    assert {p["id"]: p["email"] for p in contacts["staff"]}[agent] == emails["agent"]
    assert refused == {"no key": [401, 401, 401], "no scope": [403, 403, 403]}


async def _async(value: Any) -> Any:
    await asyncio.sleep(0)
    return value

