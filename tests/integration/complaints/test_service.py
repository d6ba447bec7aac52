"""The complaints service on the real broker and store: intake, tiers, SLA scheduler, lifecycle,
satisfaction, erasure and reports.

Clocks are fixed in March 2026 (Shanghai working days, no holidays) so that complaints other tests
left on the shared intake topic, opened later in the year, are never due here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.complaints import domain
from services.complaints.app import build_app
from services.complaints.settings import ComplaintsSettings
from shared.clock import FixedClock
from shared.contract import dlq
from shared.contract.topics import (
    CRM_COMPLAINT_INTAKE,
    CRM_COMPLAINTS,
    CRM_CUSTOMER_TIERS,
    CRM_CUSTOMERS,
    CRM_INTERACTIONS,
)
from tests.helpers import api_key, consume_all, envelope, eventually, produce, running

pytestmark = pytest.mark.integration
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
#: The report test has a day of its own: no other test opens complaints on it.
REPORT_DAY = datetime(2026, 3, 10, 9, 0, tzinfo=SHANGHAI)
WRITER, WRITER_KEY = api_key("ann", "complaints:read", "complaints:write")
OTHER, OTHER_KEY = api_key("bob", "complaints:read", "complaints:write")
READER, READER_KEY = api_key("viewer", "complaints:read")


def settings(unique: str, group: str = "", **overrides: Any) -> ComplaintsSettings:
    # Each test reads only what it produces after ``started``: the shared topics hold every earlier
    # run's records, and replaying them all would make each test as slow as the topics are long.
    return ComplaintsSettings(mongodb_database=f"test_complaints_{unique}",
                              kafka_group_id=f"test-complaints-{unique}{group}", kafka_auto_offset_reset="latest",
                              api_keys=(WRITER_KEY, OTHER_KEY, READER_KEY), scheduler_interval_s=0.2, **overrides)


@contextlib.asynccontextmanager
async def started(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app running, with every subscriber assigned all its partitions and positioned on them."""
    async with running(app) as client:
        for subscriber in app.state.runtime.broker.subscribers:
            consumer = subscriber.consumer
            topic = subscriber.topic_names[0]

            async def assigned(consumer: Any = consumer, topic: str = topic) -> set | None:
                wanted = consumer.partitions_for_topic(topic)
                owned = {tp.partition for tp in consumer.assignment()}
                return owned if wanted and owned == wanted else None

            await eventually(assigned, timeout=60)
            for tp in consumer.assignment():
                await asyncio.wait_for(consumer.position(tp), 30)
        yield client


def auth(key: str = WRITER) -> dict[str, str]:
    return {"X-API-Key": key}


def body(customer: str, **fields: Any) -> dict[str, Any]:
    return {"customer_id": customer, "channel": "online", "category": "delivery", "severity": "normal",
            "complexity": "standard", "subject": "Parcel late", "description": "Ordered a week ago", **fields}


def submitted(customer: str, *, time_: datetime = MONDAY, event_id: str | None = None, **fields: Any) -> dict:
    data = {k: v for k, v in body(customer, **fields).items() if k != "customer_id"}
    return envelope("complaint.submitted", customer, data, time_=time_, event_id=event_id)


async def events_of(infra: dict[str, str], customer: str, until: Any, timeout: float = 30.0) -> list[dict]:
    """The lifecycle events of one customer, deduplicated by id, in order."""

    def decode(records: list) -> list[dict]:
        seen: dict[str, dict] = {}
        for r in records:
            if r.key == customer.encode():
                event = json.loads(r.value)
                seen.setdefault(event["id"], event)
        return list(seen.values())

    records = await consume_all(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_COMPLAINTS,
                                until=lambda rs: until(decode(rs)), timeout=timeout)
    return decode(records)


def types(events: list[dict]) -> list[str]:
    return [e["type"].removeprefix("complaint.") for e in events]


async def dead_letters(infra: dict[str, str], topic: str, customer: str) -> list:
    records = await consume_all(infra["KAFKA_BOOTSTRAP_SERVERS"], dlq(topic),
                                until=lambda rs: any(r.key == customer.encode() for r in rs))
    return [r for r in records if r.key == customer.encode()]


async def test_topic_intake_opens_each_complaint_once_and_publishes_opened_once(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    first = submitted(customer, complaint_id=f"K-{unique}")
    same_complaint_other_event = {**first, "id": f"redelivered-{unique}"}
    no_id = submitted(customer, event_id=f"E-{unique}")
    async with started(build_app(settings(unique), clock=FixedClock(MONDAY + timedelta(hours=1)))) as client:
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_COMPLAINT_INTAKE,
                      [(customer.encode(), m) for m in (first, first, same_complaint_other_event, no_id, no_id)])

        async def listed() -> list:
            found = (await client.get(f"/complaints?customer={customer}", headers=auth(READER))).json()["items"]
            return found if len(found) == 2 else []

        complaints = await eventually(listed)
        stored = (await client.get(f"/complaints/K-{unique}", headers=auth(READER))).json()
    assert stored["status"] == "received" and stored["priority"] == "p3"
    assert stored["sla_policy"] == "standard@2026.1"
    assert stored["opened_at"].startswith("2026-03-02T01:00:00")  # the event's own time, not arrival
    assert stored["first_response_due_at"].startswith("2026-03-03T01:00:00")  # 24 h later, in UTC
    assert {c["complaint_id"] for c in complaints} >= {f"K-{unique}"}
    events = await events_of(infra, customer, until=lambda es: len(es) >= 2)
    assert types(events) == ["opened", "opened"]
    assert {e["data"]["complaint_id"] for e in events} == {c["complaint_id"] for c in complaints}
    assert all(e["data"]["resolution_due_at"] for e in events)


async def test_replaying_the_intake_topic_from_our_record_changes_nothing_and_publishes_nothing_new(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    first, marker = submitted(customer, complaint_id=f"K-{unique}"), submitted(customer, complaint_id=f"M-{unique}")
    bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]

    async def stored(client: httpx.AsyncClient, complaint_id: str) -> dict | None:
        response = await client.get(f"/complaints/{complaint_id}", headers=auth(READER))
        return response.json() if response.status_code == 200 else None

    async with started(build_app(settings(unique), clock=FixedClock(MONDAY + timedelta(hours=1)))) as client:
        await produce(bootstrap, CRM_COMPLAINT_INTAKE, [(customer.encode(), first)])
        before = await eventually(lambda: stored(client, f"K-{unique}"))
    # A new consumer group over the same store, rewound to our record, reads it again hours later.
    replay = settings(unique, group="-replay")
    ours = [r for r in await consume_all(bootstrap, CRM_COMPLAINT_INTAKE, until=lambda rs: any(
        r.key == customer.encode() for r in rs), timeout=60) if r.key == customer.encode()]
    await rewind(bootstrap, f"{replay.group_id}.{CRM_COMPLAINT_INTAKE}", CRM_COMPLAINT_INTAKE,
                 ours[0].partition, ours[0].offset)
    async with running(build_app(replay, clock=FixedClock(MONDAY + timedelta(hours=5)))) as client:
        await produce(bootstrap, CRM_COMPLAINT_INTAKE, [(customer.encode(), marker)])
        await eventually(lambda: stored(client, f"M-{unique}"), timeout=60)
        after = await stored(client, f"K-{unique}")
    assert after == before
    events = await events_of(infra, customer, until=lambda es: len(es) >= 2)
    assert [(e["type"], e["data"]["complaint_id"]) for e in events] == [
        ("complaint.opened", f"K-{unique}"), ("complaint.opened", f"M-{unique}")]


async def rewind(bootstrap: str, group: str, topic: str, partition: int, offset: int) -> None:
    """Commit offsets for a new group: ``offset`` on ``partition``, the end everywhere else."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        await consumer.commit({tp: offset if tp.partition == partition else ends[tp] for tp in partitions})
    finally:
        await consumer.stop()


async def test_events_left_unsent_by_a_crash_are_published_by_the_scheduler(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    app = build_app(settings(unique), clock=FixedClock(MONDAY))
    async with started(app) as client:
        workflow = app.state.workflow
        complaint, emits = domain.open_complaint(
            complaint_id=f"K-{unique}", customer_id=customer, fields={k: v for k, v in body(customer).items() if k != "customer_id"},
            tier=None, opened_at=MONDAY, rules=workflow.rules, source="crashed")
        # Written with its outbox, then the process died before publishing.
        await workflow.repo.insert(complaint, workflow._render(complaint, emits))

        async def sent() -> bool:
            doc = await workflow.repo.complaints.find_one({"_id": f"K-{unique}"})
            return not doc["pending"]

        await eventually(sent)
        assert (await client.get(f"/complaints/K-{unique}", headers=auth(READER))).status_code == 200
    events = await events_of(infra, customer, until=lambda es: len(es) >= 1)
    assert types(events) == ["opened"] and events[0]["data"]["complaint_id"] == f"K-{unique}"


async def test_events_a_bulk_write_left_unsent_are_published_for_the_complaints_it_stored_only(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    app = build_app(settings(unique), clock=FixedClock(MONDAY))
    async with started(app):
        workflow = app.state.workflow
        repo = workflow.repo
        fields = {k: v for k, v in body(customer).items() if k != "customer_id"}
        opened = {}
        for n in range(3):
            complaint, emits = domain.open_complaint(
                complaint_id=f"K-{unique}-{n}", customer_id=customer, fields=fields, tier=None, opened_at=MONDAY,
                rules=workflow.rules, source=f"bulk/{n}")
            opened[complaint.complaint_id] = (complaint, workflow._render(complaint, emits))
        # A bulk intake held the events of K-0 and K-1 and stored K-0, then the process died; K-2
        # was opened by another writer with no part in that write.
        await repo.hold_unsent("crashed", [(k, customer, 0, events) for k, (_, events) in opened.items()
                                           if not k.endswith("-2")])
        assert not await repo.insert_new([(opened[f"K-{unique}-0"][0], [])], "crashed")
        assert not await repo.insert_new([(opened[f"K-{unique}-2"][0], [])])

        async def released() -> bool:
            return "crashed" not in await repo.unsent_tokens()

        await eventually(released)
    # Read for a while: anything published for K-1 or K-2 is read too.
    events = await events_of(infra, customer, until=lambda es: False, timeout=5)
    assert [(e["type"], e["data"]["complaint_id"]) for e in events] == [("complaint.opened", f"K-{unique}-0")]


@pytest.mark.parametrize(
    ("topic", "bad", "error", "field"),
    [
        (CRM_COMPLAINT_INTAKE, {"channel": "fax"}, "invalid_data", "data.channel"),
        (CRM_COMPLAINT_INTAKE, {"subject": None}, "invalid_data", "data.subject"),
        (CRM_CUSTOMER_TIERS, {}, "invalid_data", "data.metrics"),
        (CRM_INTERACTIONS, {}, "invalid_data", "data.kind"),
        (CRM_CUSTOMERS, {}, "unknown_type", "type"),
    ],
    ids=["intake-channel", "intake-subject", "tiers", "interactions", "customers"],
)
async def test_a_bad_record_on_each_consumed_topic_goes_to_its_dlq_and_the_next_one_is_processed(
        infra: dict[str, str], unique: str, topic: str, bad: dict, error: str, field: str) -> None:
    customer = f"C-{unique}"
    if topic == CRM_COMPLAINT_INTAKE:
        record = submitted(customer)
        record["data"].update(bad)
    elif topic == CRM_CUSTOMER_TIERS:
        record = envelope("customer.classification", customer, {"vip": "vip", "policy_version": "v1",
                                                                "updated_at": MONDAY.isoformat()}, time_=MONDAY)
    elif topic == CRM_INTERACTIONS:
        record = envelope("customer.interaction.recorded", customer,
                          {"interaction_id": f"I-{unique}", "channel": "web", "direction": "inbound"}, time_=MONDAY)
    else:
        record = submitted(customer)  # a complaint does not belong on the customers topic
    good = submitted(customer, complaint_id=f"K-{unique}-good")
    async with started(build_app(settings(unique), clock=FixedClock(MONDAY + timedelta(hours=1)))) as client:
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], topic, [(customer.encode(), record)])
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_COMPLAINT_INTAKE, [(customer.encode(), good)])

        async def processed() -> bool:
            return (await client.get(f"/complaints/K-{unique}-good", headers=auth(READER))).status_code == 200

        await eventually(processed)
    dead = await dead_letters(infra, topic, customer)
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert headers["x-error"] == error
    assert headers["x-error-detail"].startswith(field)
    assert json.loads(dead[0].value)["subject"] == customer


async def test_http_intake_is_idempotent_by_complaint_id_and_refuses_bad_bodies_naming_the_field(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    async with started(build_app(settings(unique), clock=FixedClock(MONDAY))) as client:
        first = await client.post("/complaints", json=body(customer, complaint_id=f"K-{unique}"), headers=auth())
        again = await client.post("/complaints", json=body(customer, complaint_id=f"K-{unique}"), headers=auth())
        fresh = await client.post("/complaints", json=body(customer), headers=auth())
        taken = await client.post("/complaints", json=body(f"D-{unique}", complaint_id=f"K-{unique}"),
                                  headers=auth())
        bad_channel = await client.post("/complaints", json=body(customer, channel="fax"), headers=auth())
        missing = await client.post("/complaints", json={k: v for k, v in body(customer).items() if k != "subject"},
                                    headers=auth())
        unknown = await client.post("/complaints", json=body(customer, mood="angry"), headers=auth())
        no_key = await client.post("/complaints", json=body(customer))
        read_only = await client.post("/complaints", json=body(customer), headers=auth(READER))
        bad_transition = await client.post(f"/complaints/K-{unique}/transitions", json={"to": "done"},
                                           headers=auth())
        bad_score = await client.post(f"/complaints/K-{unique}/feedback", json={"score": 6}, headers=auth())
        bad_report = await client.get("/reports/complaints?from=yesterday&to=2026-03-03T00:00:00Z",
                                      headers=auth(READER))
        url = f"/complaints/K-{unique}"
        bad_bodies = [
            (await client.post(f"{url}/assignment", json={}, headers=auth()), "assignee"),
            (await client.post(f"{url}/verification", json={"verifier": ""}, headers=auth()), "verifier"),
            (await client.post(f"{url}/comments", json={"text": ""}, headers=auth()), "text"),
            (await client.post(f"{url}/reopen", json={"reason": "<b>"}, headers=auth()), "reason"),
            (await client.post(f"{url}/transitions", json={"to": "resolved", "root_cause": "fate"}, headers=auth()),
             "root_cause"),
        ]
        missing_complaint = await client.get("/complaints/K-nothing", headers=auth(READER))
        listed = (await client.get(f"/complaints?customer={customer}", headers=auth(READER))).json()
        asyncapi = (await client.get("/asyncapi.json")).json()
    assert {"complaint intake", "customer tiers", "customer erasure", "survey responses",
            "complaint lifecycle"} <= set(asyncapi["channels"])
    assert (first.status_code, again.status_code, fresh.status_code) == (201, 200, 201)
    assert again.json()["complaint_id"] == f"K-{unique}" and fresh.json()["complaint_id"] != f"K-{unique}"
    assert listed["count"] == 2
    assert taken.status_code == 409 and taken.json()["detail"]["error"] == "complaint_id_taken"
    assert missing_complaint.status_code == 404
    for response, field in ((bad_channel, "channel"), (missing, "subject"), (unknown, "mood"),
                            (bad_transition, "to"), (bad_score, "score"), (bad_report, "from"), *bad_bodies):
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"][-1] == field
    assert (no_key.status_code, read_only.status_code) == (401, 403)


async def test_a_vip_from_the_tier_topic_gets_a_higher_priority_and_shorter_targets(
        infra: dict[str, str], unique: str) -> None:
    vip, regular = f"V-{unique}", f"R-{unique}"
    classification = envelope("customer.classification", vip, {
        "vip": "vip", "value_tier": "high", "policy_version": "v1", "updated_at": MONDAY.isoformat(),
        "metrics": {"currency": "CNY", "spend_12m": "50000.00", "orders_12m": 30}}, time_=MONDAY)
    async with started(build_app(settings(unique), clock=FixedClock(MONDAY))) as client:
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_CUSTOMER_TIERS, [(vip.encode(), classification)])
        repo = client._transport.app.state.repo  # type: ignore[attr-defined]
        await eventually(lambda: _tier_is(repo, vip, "vip"))
        vip_complaint = (await client.post("/complaints", json=body(vip), headers=auth())).json()
        regular_complaint = (await client.post("/complaints", json=body(regular), headers=auth())).json()
    assert (vip_complaint["priority"], regular_complaint["priority"]) == ("p2", "p3")
    assert vip_complaint["customer_tier"] == "vip"
    assert vip_complaint["sla_policy"] == "preferred@2026.1"
    assert vip_complaint["first_response_due_at"] < regular_complaint["first_response_due_at"]
    assert vip_complaint["resolution_due_at"].startswith("2026-03-03T10:00:00")  # 2 working days
    assert regular_complaint["resolution_due_at"].startswith("2026-03-04T10:00:00")  # 3 working days


async def _tier_is(repo: Any, customer: str, tier: str) -> bool:
    return await repo.tier(customer) == tier


async def test_the_scheduler_warns_at_75_percent_and_breaches_at_the_target_with_no_new_input(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    clock = FixedClock(MONDAY)
    async with started(build_app(settings(unique), clock=clock)) as client:
        created = (await client.post("/complaints", json=body(customer), headers=auth())).json()
        url = f"/complaints/{created['complaint_id']}"

        async def timers(*kinds: str) -> list | None:
            doc = (await client.get(url, headers=auth(READER))).json()
            found = [t["kind"] for t in doc["timers"] if t["kind"] in kinds]
            return doc if len(found) == len(kinds) else None

        clock.advance(timedelta(hours=17, minutes=59))
        clock.advance(timedelta(minutes=1))  # 18 h: 75 % of the 24 h first-response target
        warned = await eventually(lambda: timers("warned"))
        assert not warned["breached"]
        clock.advance(timedelta(hours=6))
        breached = await eventually(lambda: timers("warned", "breached"))
        listed = (await client.get(f"/complaints?customer={customer}&breached=true", headers=auth(READER))).json()
    assert breached["breached"] and breached["escalation_level"] == 1 and breached["priority"] == "p2"
    assert listed["count"] == 1
    events = await events_of(infra, customer, until=lambda es: len(es) >= 6)
    # The development staff directory: the warning reaches the agent the complaint was routed to,
    # the breach moves it to the care team's supervisor, who is told.
    assert types(events) == ["opened", "sla_warning", "staff_alert", "sla_breached", "escalated", "staff_alert"]
    warning, breach, escalation = events[1], events[3], events[4]
    assert warning["data"]["sla_target"] == breach["data"]["sla_target"] == "first_response"
    assert escalation["data"]["changes"]["escalated_to"] == "supervisor"
    assert escalation["data"]["priority"] == "p2"
    assert escalation["data"]["changes"]["assignee"] == [events[0]["data"]["assignee"], "sup-wang"]
    assert [e["data"]["alert"]["kind"] for e in (events[2], events[5])] == ["sla_warning", "escalated"]
    assert breached["assignee"] == "sup-wang" and breached["team"] == "care"


async def test_a_complaint_goes_through_its_lifecycle_with_verification_and_feedback_over_http(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    clock = FixedClock(MONDAY)
    async with started(build_app(settings(unique, verification=True), clock=clock)) as client:
        url = "/complaints/" + (await client.post("/complaints", json=body(customer), headers=auth())).json()[
            "complaint_id"]

        async def move(to: str, key: str = WRITER, **extra: Any) -> httpx.Response:
            return await client.post(f"{url}/transitions", json={"to": to, **extra}, headers=auth(key))

        async def listed(**params: str) -> list[str]:
            found = await client.get("/complaints", params={"customer": customer, **params}, headers=auth(READER))
            return [c["complaint_id"] for c in found.json()["items"]]

        open_at_first = await listed(open="true")
        early = await move("resolved", resolution_summary="x", root_cause="logistics")
        assigned = await client.post(f"{url}/assignment", json={"assignee": "ann"}, headers=auth())
        clock.advance(timedelta(hours=1))
        assert (await move("acknowledged")).json()["first_response_at"]
        assert (await move("investigating")).status_code == 200
        paused = (await move("waiting_on_customer")).json()
        clock.advance(timedelta(days=2))
        resumed = (await move("investigating")).json()
        incomplete = await move("resolved", resolution_summary="Refund issued")
        resolved = await move("resolved", resolution_summary="Refund issued", root_cause="logistics")
        close_unverified = await move("closed")
        own_verification = await client.post(f"{url}/verification", json={}, headers=auth())
        verified = await client.post(f"{url}/verification", json={}, headers=auth(OTHER))
        feedback = await client.post(f"{url}/feedback", json={"score": 5, "comment": "Thanks"}, headers=auth())
        read = await client.get(url, headers=auth(READER))
        open_at_last, closed_at_last = await listed(open="true"), await listed(open="false")
        bad_open = await client.get("/complaints", params={"open": "maybe"}, headers=auth(READER))
    # ``open`` selects the complaints not resolved or closed (the console's work queue).
    assert open_at_first == closed_at_last == [url.rsplit("/", 1)[1]] and open_at_last == []
    assert bad_open.status_code == 422 and bad_open.json()["detail"][0]["loc"] == ["query", "open"]
    assert early.status_code == 409
    assert early.json()["detail"] == {"error": "invalid_transition", "message": "cannot go from received to resolved",
                                      "allowed_transitions": ["acknowledged"]}
    assert assigned.json()["assignee"] == "ann"
    assert paused["sla"]["resolution"]["state"] == "paused" and paused["resolution_due_at"] is None
    assert resumed["sla"]["resolution"]["state"] == "running"
    assert resumed["sla"]["resolution"]["used_seconds"] == 3600  # Monday 09:00-10:00; the pause does not count
    assert incomplete.status_code == 409 and incomplete.json()["detail"]["error"] == "resolution_incomplete"
    assert resolved.json()["status"] == "resolved" and resolved.json()["resolved_by"] == "ann"
    assert close_unverified.json()["detail"]["error"] == "verification_required"
    assert own_verification.status_code == 409 and own_verification.json()["detail"]["error"] == "verifier_is_resolver"
    assert verified.json()["verified_by"] == "bob"
    assert feedback.json()["status"] == "closed"
    assert read.json()["allowed_transitions"] == []
    events = await events_of(infra, customer, until=lambda es: "closed" in types(es))
    assert types(events) == ["opened", "assigned", "acknowledged", "resolved", "feedback_received", "closed"]
    assert events[4]["data"]["feedback_score"] == 5


async def test_reopening_within_30_days_reopens_and_later_opens_a_new_linked_complaint(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    clock = FixedClock(MONDAY)
    async with started(build_app(settings(unique), clock=clock)) as client:
        url = "/complaints/" + (await client.post("/complaints", json=body(customer), headers=auth())).json()[
            "complaint_id"]
        for step in ("acknowledged", "investigating"):
            await client.post(f"{url}/transitions", json={"to": step}, headers=auth())
        resolve = {"to": "resolved", "resolution_summary": "Replaced", "root_cause": "product_defect"}
        await client.post(f"{url}/transitions", json=resolve, headers=auth())
        clock.advance(timedelta(days=3))
        reopened = await client.post(f"{url}/reopen", json={}, headers=auth())
        await client.post(f"{url}/transitions", json=resolve, headers=auth())
        await client.post(f"{url}/transitions", json={"to": "closed"}, headers=auth())
        clock.advance(timedelta(days=31))
        linked = await client.post(f"{url}/reopen", json={}, headers=auth())
        old = (await client.get(url, headers=auth(READER))).json()
    assert reopened.status_code == 200 and reopened.json()["status"] == "investigating"
    assert reopened.json()["reopen_count"] == 1
    assert linked.status_code == 201
    assert linked.json()["linked_complaint_id"] == url.rsplit("/", 1)[1]
    assert linked.json()["status"] == "received" and linked.json()["category"] == "delivery"
    assert old["status"] == "closed"


async def test_a_low_survey_score_on_the_interactions_topic_reopens_the_complaint(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    clock = FixedClock(MONDAY)
    async with started(build_app(settings(unique), clock=clock)) as client:
        complaint_id = (await client.post("/complaints", json=body(customer), headers=auth())).json()["complaint_id"]
        url = f"/complaints/{complaint_id}"
        for step in ({"to": "acknowledged"}, {"to": "investigating"},
                     {"to": "resolved", "resolution_summary": "Refunded", "root_cause": "billing_error"}):
            await client.post(f"{url}/transitions", json=step, headers=auth())
        survey = envelope("customer.interaction.recorded", customer, {
            "interaction_id": f"S-{unique}", "kind": "survey_response", "channel": "sms", "direction": "inbound",
            "satisfaction": 1, "complaint_id": complaint_id}, time_=MONDAY)
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_INTERACTIONS,
                      [(customer.encode(), survey), (customer.encode(), survey)])

        async def reopened() -> dict | None:
            doc = (await client.get(url, headers=auth(READER))).json()
            return doc if doc["status"] == "investigating" else None

        doc = await eventually(reopened)
    assert doc["reopen_count"] == 1 and [f["score"] for f in doc["feedback"]] == [1]
    events = await events_of(infra, customer, until=lambda es: "reopened" in types(es))
    assert types(events)[-2:] == ["feedback_received", "reopened"]


async def test_a_survey_answer_naming_no_complaint_scores_only_one_resolved_within_the_window(
        infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    classification = envelope("customer.classification", customer, {
        "vip": "vip", "value_tier": "high", "policy_version": "v1", "updated_at": MONDAY.isoformat(),
        "metrics": {"currency": "CNY", "spend_12m": "50000.00", "orders_12m": 30}}, time_=MONDAY)
    async with started(build_app(settings(unique), clock=FixedClock(MONDAY))) as client:
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_CUSTOMER_TIERS, [(customer.encode(), classification)])
        await eventually(lambda: _tier_is(client._transport.app.state.repo, customer, "vip"))  # type: ignore[attr-defined]
        complaint_id = (await client.post("/complaints", json=body(customer), headers=auth())).json()["complaint_id"]
        url = f"/complaints/{complaint_id}"
        for step in ({"to": "acknowledged"}, {"to": "investigating"},
                     {"to": "resolved", "resolution_summary": "Refunded", "root_cause": "billing_error"}):
            await client.post(f"{url}/transitions", json=step, headers=auth())

        def survey(n: int, at: datetime) -> tuple[bytes, dict[str, Any]]:
            return customer.encode(), envelope("customer.interaction.recorded", customer, {
                "interaction_id": f"S-{unique}-{n}", "kind": "survey_response", "channel": "sms",
                "direction": "inbound", "satisfaction": 1}, time_=at)

        # Two hundred days after the resolution: general satisfaction, not this complaint's. Three: its.
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_INTERACTIONS,
                      [survey(1, MONDAY + timedelta(days=200)), survey(2, MONDAY + timedelta(days=3))])

        async def scored() -> dict | None:
            doc = (await client.get(url, headers=auth(READER))).json()
            return doc if doc["feedback"] else None

        doc = await eventually(scored)
        await asyncio.sleep(1)
        doc = (await client.get(url, headers=auth(READER))).json()

        async def report(start: datetime, days: int) -> dict[str, Any]:
            return (await client.get("/reports/complaints", headers=auth(READER), params={
                "from": start.isoformat(), "to": (start + timedelta(days=days)).isoformat()})).json()

        general = await report(MONDAY + timedelta(days=199), 2)
        around = await report(MONDAY, 10)
    assert [f["source"] for f in doc["feedback"]] == [f"interaction/S-{unique}-2"]
    assert doc["status"] == "investigating"  # a score of 1 reopens it
    # The answer that scored no complaint is general satisfaction, by the customer's tier.
    assert general["general_satisfaction"] == {"responses": 1, "average": 1.0, "satisfied_rate": 0.0, "by_tier": {
        "vip": {"responses": 1, "average": 1.0, "satisfied_rate": 0.0}}}
    assert around["csat"]["responses"] == 1 and around["general_satisfaction"]["responses"] == 0


async def test_customer_erased_removes_the_customers_text_from_complaints(infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    erased = envelope("customer.erased", customer, {"erased_at": MONDAY.isoformat()}, time_=MONDAY)
    async with started(build_app(settings(unique), clock=FixedClock(MONDAY))) as client:
        url = "/complaints/" + (await client.post("/complaints", json=body(customer), headers=auth())).json()[
            "complaint_id"]
        await client.post(f"{url}/comments", json={"text": "Customer lives at 5 Nanjing Road"}, headers=auth())
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_CUSTOMERS, [(customer.encode(), erased),
                                                                       (customer.encode(), None)])

        async def scrubbed() -> dict | None:
            doc = (await client.get(url, headers=auth(READER))).json()
            return doc if doc["erased"] else None

        doc = await eventually(scrubbed)
    assert (doc["subject"], doc["description"], doc["comments"]) == ("", "", [])
    assert doc["category"] == "delivery" and doc["status"] == "received"


async def test_the_report_counts_times_attainment_csat_and_reopen_rate(infra: dict[str, str], unique: str) -> None:
    customer = f"C-{unique}"
    clock = FixedClock(REPORT_DAY)
    async with started(build_app(settings(unique), clock=clock)) as client:
        ids = []
        for channel, category in (("phone", "delivery"), ("email", "delivery"), ("phone", "billing")):
            created = await client.post("/complaints", json=body(customer, channel=channel, category=category),
                                        headers=auth())
            ids.append(created.json()["complaint_id"])
        resolve = {"to": "resolved", "resolution_summary": "Done", "root_cause": "other"}
        for hours, complaint_id in zip((2, 4), ids[:2], strict=True):
            clock.set(REPORT_DAY + timedelta(hours=hours))
            for step in ({"to": "acknowledged"}, {"to": "investigating"}, resolve):
                await client.post(f"/complaints/{complaint_id}/transitions", json=step, headers=auth())
        await client.post(f"/complaints/{ids[0]}/feedback", json={"score": 5}, headers=auth())
        await client.post(f"/complaints/{ids[1]}/feedback", json={"score": 2}, headers=auth())  # reopens
        report = (await client.get("/reports/complaints", params={"from": "2026-03-10T00:00:00+08:00",
                                                                   "to": "2026-03-11T00:00:00+08:00"},
                                   headers=auth(READER))).json()
        empty = (await client.get("/reports/complaints", params={"from": "2026-01-01T00:00:00Z",
                                                                  "to": "2026-01-02T00:00:00Z"},
                                  headers=auth(READER))).json()
    assert report["total"] == 3
    assert report["by_category"] == {"delivery": 2, "billing": 1}
    assert report["by_channel"] == {"phone": 2, "email": 1}
    assert report["first_response"] == {"count": 2, "median_hours": 3.0, "p90_hours": 4.0}
    assert report["resolution"] == {"count": 2, "median_hours": 3.0, "p90_hours": 4.0}
    assert report["sla_attainment"]["first_response"] == {"settled": 2, "met": 2, "rate": 1.0}
    assert report["csat"] == {"responses": 2, "average": 3.5, "satisfied_rate": 0.5}
    assert report["reopen_rate"] == 0.5
    assert empty["total"] == 0 and empty["csat"]["average"] is None
