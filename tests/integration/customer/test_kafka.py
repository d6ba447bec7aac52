"""The customer service on the real broker: what it consumes, what it publishes, what it dead-letters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.customer.activity import Activity
from services.customer.app import build_app
from services.customer.domain import profile_event_id
from shared.contract import dlq
from shared.contract.parser import parse_event
from shared.contract.topics import (
    CRM_ACCOUNT_MANAGERS,
    CRM_COMPLAINTS,
    CRM_CUSTOMER_INTAKE,
    CRM_CUSTOMER_TIERS,
    CRM_CUSTOMERS,
    CRM_INTERACTIONS,
    CRM_NOTIFICATIONS,
    ORDERS_PURCHASES,
)
from tests.helpers import consume_all, envelope, eventually, produce, purchase, running

from .conftest import consuming, customer_settings, headers

pytestmark = pytest.mark.integration

PHONE, EMAIL = "+8613712345678", "lei.li@example.com"


def registration(customer: str, **data: Any) -> dict[str, Any]:
    return envelope("customer.registered", customer,
                    {"name": "Li Lei", "phone": PHONE, "email": EMAIL, "locale": "zh-CN",
                     "consents": {"sms": True}, **data}, source="shop/web")


def classification(customer: str, updated_at: datetime, value_tier: str, lifecycle: str) -> dict[str, Any]:
    return envelope("customer.classification", customer, {
        "value_tier": value_tier, "lifecycle": lifecycle, "abc_class": "A", "vip": "regular",
        "metrics": {"currency": "CNY", "spend_12m": "1200.00", "orders_12m": 3},
        "policy_version": "2026-1", "updated_at": updated_at.isoformat()}, time_=updated_at)


def complaint(customer: str, name: str, complaint_id: str, status: str, at: datetime) -> dict[str, Any]:
    return envelope(f"complaint.{name}", customer, {"complaint_id": complaint_id, "status": status, "priority": "p2",
                                                     "category": "delivery"}, time_=at)


def ours(key: str):  # noqa: ANN201
    return lambda records: [r for r in records if r.key == key.encode()]


async def dead_letters(bootstrap: str, topic: str, key: str, count: int = 1) -> list[dict[str, str]]:
    records = ours(key)(await consume_all(bootstrap, dlq(topic), until=lambda rs: len(ours(key)(rs)) >= count))
    return [{k: v.decode() for k, v in r.headers} for r in records]


async def test_an_upstream_registration_becomes_a_profile_published_on_the_compacted_topic(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer, bootstrap = f"C-{unique}", infra["KAFKA_BOOTSTRAP_SERVERS"]
    full = headers(keys["all"])
    registered = registration(customer)
    update = envelope("customer.updated", customer, {"locale": "en-US", "consents": {"sms": False}})
    app = build_app(customer_settings(unique, keys["entries"]))
    async with running(app) as client:
        await consuming(app)
        await produce(bootstrap, CRM_CUSTOMER_INTAKE, [(customer.encode(), registered), (customer.encode(), update)])
        view = await eventually(lambda: _version(client, customer, full, 2))
        # A redelivery and a replay of the older registration change nothing.
        await produce(bootstrap, CRM_CUSTOMER_INTAKE, [(customer.encode(), registered), (customer.encode(), update)])
        marker = envelope("customer.updated", customer, {"tags": ["replayed"]})
        await produce(bootstrap, CRM_CUSTOMER_INTAKE, [(customer.encode(), marker)])
        after = await eventually(lambda: _version(client, customer, full, 3))
        ledger = (await client.get(f"/customers/{customer}/consents", headers=full)).json()
    assert (view["name"], view["phone"], view["locale"], view["status"], view["source"]) == (
        "Li Lei", PHONE, "en-US", "active", "shop/web")
    assert (after["locale"], after["tags"], after["consents"]["sms"]) == ("en-US", ["replayed"], False)
    assert [(h["consent"], h["granted"], h["source"]) for h in ledger["history"]] == [
        ("sms", True, "shop/web"), ("sms", False, "tests")]
    recorded_at = datetime.fromisoformat(ledger["history"][0]["at"])
    assert abs(recorded_at - datetime.fromisoformat(registered["time"])) < timedelta(milliseconds=1)  # event time

    published = ours(customer)(await consume_all(bootstrap, CRM_CUSTOMERS,
                                                 until=lambda rs: len(ours(customer)(rs)) >= 3))
    # The redelivered last update may publish its profile again (it cannot tell whether its first
    # publication happened): the same event, under the same id.
    events = list({e["id"]: e for e in map(json.loads, (r.value for r in published))}.values())
    assert [e["type"] for e in events] == ["customer.profile.changed"] * 3
    assert [e["data"]["version"] for e in events] == [1, 2, 3]
    assert [e["id"] for e in events] == [profile_event_id(customer, v) for v in (1, 2, 3)]
    assert events[0]["data"]["phone"] == PHONE and events[0]["data"]["consents"]["sms"] is True
    assert events[1]["data"]["consents"]["sms"] is False  # a withdrawal is published with the profile


async def _version(client: Any, customer: str, hdrs: dict[str, str], version: int) -> dict[str, Any] | None:
    response = await client.get(f"/customers/{customer}", headers=hdrs)
    body = response.json() if response.status_code == 200 else {}
    return body if body.get("version") == version else None


async def test_bad_intake_records_go_to_the_dlq_and_the_record_behind_them_is_applied(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer, stranger, bootstrap = f"C-{unique}", f"C-stranger-{unique}", infra["KAFKA_BOOTSTRAP_SERVERS"]
    bad_phone = registration(customer, phone="+86123")
    unknown = envelope("customer.updated", stranger, {"locale": "en-US"})
    app = build_app(customer_settings(unique, keys["entries"]))
    async with running(app) as client:
        await consuming(app)
        await produce(bootstrap, CRM_CUSTOMER_INTAKE, [(customer.encode(), bad_phone), (stranger.encode(), unknown),
                                                       (customer.encode(), registration(customer))])
        await eventually(lambda: _version(client, customer, headers(keys["all"]), 1))
        stranger_view = await client.get(f"/customers/{stranger}", headers=headers(keys["all"]))
    assert stranger_view.status_code == 404
    phone_error = (await dead_letters(bootstrap, CRM_CUSTOMER_INTAKE, customer))[0]
    assert phone_error["x-error"] == "invalid_data" and phone_error["x-error-detail"].startswith("data.phone")
    unknown_error = (await dead_letters(bootstrap, CRM_CUSTOMER_INTAKE, stranger))[0]
    assert unknown_error["x-error"] == "unknown_customer"


async def test_a_purchase_of_an_unknown_customer_creates_a_prospect_marked_by_its_source(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer, bootstrap = f"C-{unique}", infra["KAFKA_BOOTSTRAP_SERVERS"]
    reader = headers(keys["reader"])
    first = purchase(customer, f"O-{unique}", "300.00", source="pos/shanghai-01")
    refund = envelope("order.purchase.refunded", customer,
                      {"refund_id": f"R-{unique}", "order_id": f"O-{unique}", "amount": "100.00", "currency": "CNY"})
    app = build_app(customer_settings(unique, keys["entries"]))
    async with running(app) as client:
        await consuming(app)
        await produce(bootstrap, ORDERS_PURCHASES, [
            (customer.encode(), first), (customer.encode(), {**first, "id": f"again-{unique}"}),
            (customer.encode(), refund), (customer.encode(), purchase(customer, f"O2-{unique}", "50.00"))])

        async def two_orders() -> dict[str, Any] | None:
            body = (await client.get(f"/customers/{customer}", headers=reader)).json()
            return body if body.get("summary", {}).get("orders") == 2 and body["summary"]["refunds"] == 1 else None

        stub = await eventually(two_orders)
        await produce(bootstrap, CRM_CUSTOMER_INTAKE, [(customer.encode(), registration(customer))])
        registered = await eventually(lambda: _version(client, customer, reader, 2))
        timeline = (await client.get(f"/customers/{customer}/timeline", params={"kind": "purchase"},
                                     headers=reader)).json()
    assert (stub["status"], stub["source"], stub["version"], stub["phone"]) == ("prospect", "pos/shanghai-01", 1, None)
    assert stub["summary"]["net_spend"] == {"CNY": "250.00"}
    assert (registered["status"], registered["source"]) == ("active", "pos/shanghai-01")
    assert sorted(e["order_id"] for e in timeline["items"]) == [f"O-{unique}", f"O2-{unique}"]
    published = ours(customer)(await consume_all(bootstrap, CRM_CUSTOMERS,
                                                 until=lambda rs: len(ours(customer)(rs)) >= 2))
    assert [json.loads(r.value)["data"]["status"] for r in published] == ["prospect", "active"]


async def test_classifications_complaints_and_messages_join_the_360_degree_view(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer, bootstrap = f"C-{unique}", infra["KAFKA_BOOTSTRAP_SERVERS"]
    reader = headers(keys["reader"])
    now = datetime.now(UTC)
    app = build_app(customer_settings(unique, keys["entries"]))
    async with running(app) as client:
        await consuming(app)
        await client.post("/customers", json={"customer_id": customer, "name": "Li Lei"},
                          headers=headers(keys["writer"]))
        key = customer.encode()
        await produce(bootstrap, CRM_CUSTOMER_TIERS, [
            (key, classification(customer, now - timedelta(minutes=10), "medium", "new")),
            (key, classification(customer, now - timedelta(minutes=5), "high", "repeat")),
            # An older snapshot arriving late (a replay of the compacted topic) does not win.
            (key, classification(customer, now - timedelta(minutes=20), "low", "at_risk"))])
        await produce(bootstrap, CRM_COMPLAINTS, [
            (key, complaint(customer, "opened", f"K-{unique}", "received", now - timedelta(minutes=4))),
            (key, complaint(customer, "opened", f"K2-{unique}", "received", now - timedelta(minutes=4))),
            (key, complaint(customer, "resolved", f"K-{unique}", "resolved", now - timedelta(minutes=3))),
            (key, envelope("complaint.staff_alert", customer, {
                "complaint_id": f"K2-{unique}", "status": "received", "priority": "p2", "escalation_level": 1,
                "assignee": "sup-1", "team": "care", "sla_target": "first_response", "alert": {
                    "kind": "escalated", "staff_id": "sup-1", "staff_name": "Wang Fang", "role": "supervisor",
                    "rung": "supervisor", "on_duty": True, "email": "wang.fang@care.example",
                    "reason": "first_response_breached"}}, time_=now - timedelta(minutes=3)))])
        await produce(bootstrap, CRM_NOTIFICATIONS, [(key, envelope(
            "notification.suppressed", customer,
            {"notification_id": f"N-{unique}", "trigger": "tier_upgrade", "channel": "sms", "template": "upgrade",
             "reason": "no_consent"}, time_=now - timedelta(minutes=2)))])

        async def complete() -> dict[str, Any] | None:
            body = (await client.get(f"/customers/{customer}", headers=reader)).json()
            # The summary is written after the timeline entry, so wait for both.
            done = (body["summary"]["messages"] == 1 and body["summary"]["complaints"] == 2
                    and body["summary"]["open_complaints"] == 1
                    and len((await client.get(f"/customers/{customer}/timeline", headers=reader)).json()["items"]) == 7)
            return body if done else None

        view = await eventually(complete)
        timeline = (await client.get(f"/customers/{customer}/timeline", headers=reader)).json()["items"]
        high = (await client.get("/customers", params={"tier": "high"}, headers=reader)).json()["items"]
        repeat = (await client.get("/customers", params={"lifecycle": "repeat"}, headers=reader)).json()["items"]
        low = (await client.get("/customers", params={"tier": "low"}, headers=reader)).json()["items"]
        bad_tier = await client.get("/customers", params={"tier": "platinum"}, headers=reader)
    assert (view["classification"]["value_tier"], view["classification"]["lifecycle"]) == ("high", "repeat")
    assert view["summary"]["open_complaints"] == 1
    assert [e["kind"] for e in timeline] == ["notification", "complaint", "complaint", "complaint", "complaint",
                                             "classification", "classification"]
    # A staff alert joins the complaint's history with whom it told and why, not their name or contacts.
    [alert] = [e for e in timeline if e["event_type"] == "complaint.staff_alert"]
    assert {k: alert[k] for k in ("alert_kind", "staff_id", "rung", "alert_reason", "assignee", "escalation_level",
                                  "sla_target")} == {
        "alert_kind": "escalated", "staff_id": "sup-1", "rung": "supervisor", "alert_reason": "first_response_breached",
        "assignee": "sup-1", "escalation_level": 1, "sla_target": "first_response"}
    assert "Wang Fang" not in json.dumps(timeline) and "wang.fang" not in json.dumps(timeline)
    assert [e.get("value_tier") for e in timeline[-2:]] == ["high", "medium"]
    assert timeline[0]["outcome"] == "suppressed" and timeline[0]["reason"] == "no_consent"
    assert [c["customer_id"] for c in high] == [customer] == [c["customer_id"] for c in repeat]
    assert low == []
    assert bad_tier.status_code == 422 and bad_tier.json()["detail"][0]["loc"] == ["query", "tier"]


def manager_changed(customer: str, revision: int, manager: str | None, at: datetime) -> dict[str, Any]:
    data = {"manager_id": manager, "manager_name": manager.title() if manager else None, "reason": "vip",
            "actor": "rule", "changed_at": at.isoformat(), "revision": revision}
    return envelope("customer.account_manager.changed", customer, {k: v for k, v in data.items() if v}, time_=at)


async def test_the_account_manager_shows_on_the_360_degree_view_the_highest_revision_winning(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer, early, bootstrap = f"C-{unique}", f"E-{unique}", infra["KAFKA_BOOTSTRAP_SERVERS"]
    reader = headers(keys["reader"])
    now = datetime.now(UTC).replace(microsecond=0)
    app = build_app(customer_settings(unique, keys["entries"]))
    async with running(app) as client:
        await consuming(app)
        await client.post("/customers", json={"customer_id": customer, "name": "Li Lei"},
                          headers=headers(keys["writer"]))
        key = customer.encode()
        await produce(bootstrap, CRM_ACCOUNT_MANAGERS, [
            (key, manager_changed(customer, 1, "am-lin", now - timedelta(minutes=3))),
            (key, manager_changed(customer, 2, "am-xu", now - timedelta(minutes=2)))])

        async def manager(who: str) -> Any:
            view = (await client.get(f"/customers/{customer}", headers=reader)).json()
            return view if (view["account_manager"] or {}).get("id") == who else None

        view = await eventually(lambda: manager("am-xu"))
        # An older revision read late (a replay of the compacted topic) changes nothing; a removal does.
        await produce(bootstrap, CRM_ACCOUNT_MANAGERS, [
            (key, manager_changed(customer, 1, "am-lin", now - timedelta(minutes=3))),
            (key, manager_changed(customer, 3, None, now - timedelta(minutes=1))),
            # A manager told before the customer registers is there once they do.
            (early.encode(), manager_changed(early, 1, "am-reid", now))])
        removed = await eventually(lambda: _no_manager(client, customer, reader))
        await client.post("/customers", json={"customer_id": early, "name": "Han Mei"},
                          headers=headers(keys["writer"]))
        registered = await eventually(lambda: _has_manager(client, early, reader))
    assert view["account_manager"] == {"id": "am-xu", "name": "Am-Xu", "since": (now - timedelta(minutes=2)).isoformat()}
    assert removed["account_manager"] is None
    assert registered["account_manager"]["id"] == "am-reid" and registered["name"] == "Han Mei"


async def _no_manager(client: Any, customer: str, reader: dict[str, str]) -> Any:
    view = (await client.get(f"/customers/{customer}", headers=reader)).json()
    return view if view["account_manager"] is None else None


async def _has_manager(client: Any, customer: str, reader: dict[str, str]) -> Any:
    response = await client.get(f"/customers/{customer}", headers=reader)
    return response.json() if response.status_code == 200 and response.json()["account_manager"] else None


async def test_erasure_publishes_customer_erased_then_a_tombstone_and_keeps_amounts_anonymised(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer, bootstrap = f"C-{unique}", infra["KAFKA_BOOTSTRAP_SERVERS"]
    full = headers(keys["all"])
    settings = customer_settings(unique, keys["entries"])
    app = build_app(settings)
    registered = registration(customer)
    async with running(app) as client:
        await consuming(app)
        await produce(bootstrap, CRM_CUSTOMER_INTAKE, [(customer.encode(), registered)])
        await produce(bootstrap, ORDERS_PURCHASES, [(customer.encode(), purchase(customer, f"O-{unique}", "88.00"))])
        await produce(bootstrap, CRM_INTERACTIONS, [(customer.encode(), envelope(
            "customer.interaction.recorded", customer,
            {"interaction_id": f"I-{unique}", "kind": "call", "channel": "phone", "direction": "inbound",
             "summary": "Li Lei asked about delivery"}))])
        await eventually(lambda: _entries(client, customer, full, 2))
        erased = await client.delete(f"/customers/{customer}", headers=full)
        # A replay of the registration after the erasure does not bring the personal data back.
        await produce(bootstrap, CRM_CUSTOMER_INTAKE, [(customer.encode(), {**registered, "id": f"replay-{unique}"})])
        await produce(bootstrap, ORDERS_PURCHASES, [(customer.encode(), purchase(customer, f"O2-{unique}", "12.00"))])
        raw = AsyncMongoClient(infra["MONGODB_URL"])
        try:
            timeline = raw[settings.database_name]["timeline"]
            await eventually(lambda: timeline.find_one({"order_id": f"O2-{unique}"}))
            entries = await timeline.find({"customer_id": customer}).to_list(None)
            doc = await raw[settings.database_name]["customers"].find_one({"_id": customer})
        finally:
            await raw.close()
        after = await client.get(f"/customers/{customer}", headers=full)
    assert erased.status_code == 204 and after.status_code == 410
    assert doc["status"] == "erased" and "pii" not in doc
    assert sorted(e.get("amount") for e in entries if e["kind"] == "purchase") == ["12.00", "88.00"]
    assert all("pii" not in e for e in entries)

    def erased_and_tombstoned(records: list) -> bool:
        return any(r.value is None for r in ours(customer)(records))

    published = ours(customer)(await consume_all(bootstrap, CRM_CUSTOMERS, until=erased_and_tombstoned))
    assert published[-1].value is None
    types = [json.loads(r.value)["type"] for r in published[:-1]]
    # The purchase may have made a prospect before the registration arrived: one or two profile versions.
    assert types[-1] == "customer.erased" and set(types[:-1]) == {"customer.profile.changed"}
    assert "Li Lei" not in published[-2].value.decode()


async def _entries(client: Any, customer: str, hdrs: dict[str, str], count: int) -> bool:
    response = await client.get(f"/customers/{customer}/timeline", headers=hdrs)
    return response.status_code == 200 and len(response.json()["items"]) >= count


BAD_RECORDS = [
    (ORDERS_PURCHASES, "order.purchase.completed", {"order_id": "O-1", "total_amount": 10.5, "currency": "CNY"},
     "data.total_amount"),
    (CRM_INTERACTIONS, "customer.interaction.recorded",
     {"interaction_id": "I-1", "kind": "call", "channel": "phone", "direction": "inbound", "satisfaction": 9},
     "data.satisfaction"),
    (CRM_CUSTOMER_TIERS, "customer.classification", {"value_tier": "high", "policy_version": "1",
                                                     "updated_at": "2026-01-01T00:00:00+00:00"}, "data.metrics"),
    (CRM_COMPLAINTS, "complaint.opened", {"complaint_id": "K-1", "status": "received", "priority": "p9"},
     "data.priority"),
    (CRM_NOTIFICATIONS, "notification.sent", {"notification_id": "N-1", "trigger": "birthday"}, "data.template"),
    (CRM_ACCOUNT_MANAGERS, "customer.account_manager.changed",
     {"manager_id": "am-1", "reason": "vip", "actor": "rule", "changed_at": "2026-01-01T00:00:00+00:00",
      "revision": 0}, "data.revision"),
]


async def test_a_bad_record_on_every_consumed_topic_goes_to_that_topics_dlq(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer, bootstrap = f"C-{unique}", infra["KAFKA_BOOTSTRAP_SERVERS"]
    app = build_app(customer_settings(unique, keys["entries"]))
    async with running(app) as client:
        await consuming(app)
        for topic, event_type, data, _ in BAD_RECORDS:
            await produce(bootstrap, topic, [(customer.encode(), envelope(event_type, customer, data))])
        # A good purchase behind the bad one is still processed.
        await produce(bootstrap, ORDERS_PURCHASES, [(customer.encode(), purchase(customer, f"O-{unique}"))])
        await eventually(lambda: _status(client, customer, keys["reader"], "prospect"))
    for topic, _, _, field in BAD_RECORDS:
        # Other consumer groups of the shared topic may dead-letter the same record too.
        error = (await dead_letters(bootstrap, topic, customer))[0]
        assert error["x-error"] == "invalid_data", topic
        assert error["x-error-detail"].startswith(field), topic
        assert error["x-original-topic"] == topic


async def _status(client: Any, customer: str, key: str, status: str) -> bool:
    response = await client.get(f"/customers/{customer}", headers=headers(key))
    return response.status_code == 200 and response.json()["status"] == status


async def test_a_record_with_text_the_contract_refuses_goes_to_the_dlq_alone_and_its_batch_is_applied(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer, bootstrap = f"C-{unique}", infra["KAFKA_BOOTSTRAP_SERVERS"]
    key = customer.encode()

    def message(n: int, template: str) -> dict[str, Any]:
        return envelope("notification.sent", customer, {"notification_id": f"N{n}-{unique}", "trigger": "birthday",
                                                         "channel": "sms", "template": template})

    app = build_app(customer_settings(unique, keys["entries"], handler_max_attempts=2))
    async with running(app) as client:
        await consuming(app)
        await client.post("/customers", json={"customer_id": customer}, headers=headers(keys["writer"]))
        # A NUL is valid JSON that PostgreSQL's jsonb (under FerretDB) cannot hold: the contract refuses it.
        await produce(bootstrap, CRM_NOTIFICATIONS, [(key, message(1, "birthday")), (key, message(2, "A\x00B")),
                                                     (key, message(3, "birthday"))])

        async def applied() -> list[str] | None:
            items = (await client.get(f"/customers/{customer}/timeline", headers=headers(keys["reader"]))).json()
            ids = sorted(e["notification_id"] for e in items["items"])
            return ids if f"N1-{unique}" in ids and f"N3-{unique}" in ids else None

        ids = await eventually(applied, timeout=60)
    assert ids == [f"N1-{unique}", f"N3-{unique}"]
    parked = await dead_letters(bootstrap, CRM_NOTIFICATIONS, customer)
    assert [d["x-error"] for d in parked] == ["invalid_data"]


async def test_a_snapshot_that_moves_only_the_metrics_writes_nothing_and_one_that_moves_a_tier_does(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer, bootstrap = f"C-m-{unique}", infra["KAFKA_BOOTSTRAP_SERVERS"]
    now = datetime.now(UTC).replace(microsecond=0)
    app = build_app(customer_settings(unique, keys["entries"]))
    key = customer.encode()
    first, metrics_only, upgrade = now - timedelta(minutes=30), now - timedelta(minutes=20), now - timedelta(minutes=10)

    async def classified_at(at: datetime) -> bool:
        doc = await app.state.repo.peek(customer)
        return doc is not None and doc.get("classified_at") == at

    async with running(app) as client:
        await consuming(app)
        await client.post("/customers", json={"customer_id": customer, "name": "Li Lei"},
                          headers=headers(keys["writer"]))
        await produce(bootstrap, CRM_CUSTOMER_TIERS, [(key, classification(customer, first, "medium", "new"))])
        await eventually(lambda: classified_at(first))
        moved = classification(customer, metrics_only, "medium", "new")
        moved["data"]["metrics"] = {"currency": "CNY", "spend_12m": "1900.00", "orders_12m": 5}
        await produce(bootstrap, CRM_CUSTOMER_TIERS, [(key, moved),
                                                      (key, classification(customer, upgrade, "high", "new"))])
        await eventually(lambda: classified_at(upgrade))
        timeline = (await client.get(f"/customers/{customer}/timeline", headers=headers(keys["reader"]))).json()
    changes = [e for e in timeline["items"] if e["kind"] == "classification"]
    assert [e["value_tier"] for e in changes] == ["high", "medium"]


async def test_a_snapshot_with_the_same_tiers_leaves_the_stored_classification_as_it_was(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer = f"C-s-{unique}"
    now = datetime.now(UTC).replace(microsecond=0)
    app = build_app(customer_settings(unique, keys["entries"]))
    first, same = now - timedelta(minutes=30), now - timedelta(minutes=20)
    activity = Activity(app.state.workflow, app.state.repo)

    def event(at: datetime) -> Any:
        return parse_event(json.dumps(classification(customer, at, "medium", "new"), default=str).encode())

    async def reject(*_: Any) -> None:
        raise AssertionError("nothing is rejected")

    async with running(app) as client:
        await client.post("/customers", json={"customer_id": customer, "name": "Li Lei"},
                          headers=headers(keys["writer"]))
        await activity.classifications([event(first)], reject)
        await activity.classifications([event(same)], reject)  # another batch: metrics moved, tiers did not
        doc = await app.state.repo.peek(customer)
    assert doc is not None and doc["classified_at"] == first
