"""Every event type of the contract: valid samples pass, each rule broken once names its field."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.contract import (
    EVENT_TYPES,
    INBOUND_EVENTS,
    MAX_EVENT_BYTES,
    OUTBOUND_EVENTS,
    TOPICS,
    ContractError,
    parse_event,
    serialize_event,
)
from shared.contract.events import PurchaseCompleted

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
WHEN = "2026-11-23T10:15:00+08:00"
METRICS = {"currency": "CNY", "spend_12m": "1200.00", "orders_12m": 3, "first_purchase_at": WHEN,
           "last_purchase_at": WHEN, "recency_days": 0, "rfm": {"r": 5, "f": 3, "m": 4}}
COMPLAINT = {"complaint_id": "CP-1", "status": "received", "priority": "p2",
             "first_response_due_at": "2026-11-24T10:15:00+08:00"}
STAFF_ALERT = {**COMPLAINT, "team": "care", "assignee": "sup-wang", "escalation_level": 1, "alert": {
    "kind": "escalated", "staff_id": "sup-wang", "staff_name": "Wang Fang", "role": "supervisor", "rung": "supervisor",
    "on_duty": True, "email": "wang.fang@example.com", "locale": "zh-CN", "timezone": "Asia/Shanghai",
    "reason": "first_response_breached", "previous_assignee": "agent-zhao", "due_at": WHEN}}
NOTIFICATION = {"notification_id": "N-1", "trigger": "holiday:CN:spring_festival:2027", "channel": "sms",
                "template": "holiday", "locale": "zh-CN"}

#: One valid ``data`` per event type of the contract.
SAMPLES: dict[str, dict[str, Any]] = {
    "order.purchase.completed": {
        "order_id": "O-1", "total_amount": "199.90", "currency": "CNY", "channel": "store", "store_id": "sh-01",
        "items": [{"sku": "SKU-1", "name": "Tea", "category": "food", "quantity": 2, "unit_price": "99.95"}],
    },
    "order.purchase.refunded": {"refund_id": "R-1", "order_id": "O-1", "amount": "50.00", "currency": "CNY"},
    "customer.registered": {
        "name": "Li Lei", "phone": "+8613800138000", "email": "li@example.com", "birthday": "1990-02-28",
        "locale": "zh-CN", "timezone": "Asia/Shanghai", "country": "CN", "preferred_channel": "sms",
        "consents": {"email": True, "sms": True, "care_messages": True}, "needs": "standard", "tags": ["tea"],
        "industry": "retail", "region": "East China", "relationship_since": "2019-05-01",
    },
    "customer.updated": {"email": "new@example.com"},
    "customer.interaction.recorded": {
        "interaction_id": "I-1", "kind": "survey_response", "channel": "web", "direction": "inbound",
        "satisfaction": 4,
    },
    "complaint.submitted": {
        "channel": "phone", "category": "delivery", "severity": "high", "complexity": "standard",
        "subject": "Late parcel", "description": "Three days late",
    },
    "customer.profile.changed": {"name": "Li Lei", "status": "active", "version": 2, "locale": "zh-CN"},
    "customer.erased": {"erased_at": WHEN},
    "customer.tier.changed": {
        "dimension": "value_tier", "previous": "medium", "current": "high", "direction": "upgrade",
        "reason": "12-month spend 1200.00 reached the high threshold 1000.00", "policy_version": "2026.1",
        "effective_at": WHEN, "metrics": METRICS, "override": False,
    },
    "customer.classification": {
        "value_tier": "high", "abc_class": "A", "vip": "regular", "loyalty": "loyal", "lifecycle": "repeat",
        "rfm_segment": "Champions", "potential": "medium", "metrics": METRICS, "policy_version": "2026.1",
        "updated_at": WHEN,
    },
    **{t: COMPLAINT for t in EVENT_TYPES if t.startswith("complaint.") and t != "complaint.submitted"},
    "complaint.staff_alert": STAFF_ALERT,
    **{t: NOTIFICATION for t in EVENT_TYPES if t.startswith("notification.")},
    "customer.account_manager.changed": {
        "manager_id": "am-xu", "manager_name": "Xu Bo", "previous_manager_id": "am-lin", "reason": "vip",
        "actor": "rule", "changed_at": WHEN, "revision": 2,
    },
    "care.return_visit.due": {"visit_id": "return_visit:2026-11-20:C-10001", "due_on": "2026-11-20",
                              "cadence_days": 30, "manager_id": "am-xu"},
}

#: Each rule of the contract broken once: (event type, change to the event, expected code, field).
BROKEN: list[tuple[str, dict[str, Any], str, str]] = [
    ("order.purchase.completed", {"data.total_amount": 199.9}, "invalid_data", "data.total_amount"),
    ("order.purchase.completed", {"data.total_amount": "-1.00"}, "invalid_data", "data.total_amount"),
    ("order.purchase.completed", {"data.total_amount": "0"}, "invalid_data", "data.total_amount"),
    ("order.purchase.completed", {"data.total_amount": "NaN"}, "invalid_data", "data.total_amount"),
    ("order.purchase.completed", {"data.total_amount": "1.123456"}, "invalid_data", "data.total_amount"),
    ("order.purchase.completed", {"data.currency": "XXX"}, "invalid_data", "data.currency"),
    ("order.purchase.completed", {"data.currency": "cny"}, "invalid_data", "data.currency"),
    ("order.purchase.completed", {"data.order_id": None}, "invalid_data", "data.order_id"),
    ("order.purchase.completed", {"data.channel": "fax"}, "invalid_data", "data.channel"),
    ("order.purchase.completed", {"data.items": [{"sku": "A", "quantity": 0, "unit_price": "1"}]},
     "invalid_data", "data.items.0.quantity"),
    ("order.purchase.completed", {"data.items": [{"sku": "A", "quantity": 1, "unit_price": 1.5}]},
     "invalid_data", "data.items.0.unit_price"),
    ("order.purchase.completed", {"data.unknown_field": 1}, "invalid_data", "data.unknown_field"),
    ("order.purchase.refunded", {"data.amount": "-5"}, "invalid_data", "data.amount"),
    ("order.purchase.refunded", {"data.refund_id": None}, "invalid_data", "data.refund_id"),
    ("customer.registered", {"data.phone": "13800138000"}, "invalid_data", "data.phone"),
    ("customer.registered", {"data.phone": "+86123"}, "invalid_data", "data.phone"),
    ("customer.registered", {"data.email": "not-an-email"}, "invalid_data", "data.email"),
    ("customer.registered", {"data.birthday": "2999-01-01"}, "invalid_data", "data.birthday"),
    ("customer.registered", {"data.locale": "chinese"}, "invalid_data", "data.locale"),
    ("customer.registered", {"data.timezone": "Mars/Olympus"}, "invalid_data", "data.timezone"),
    ("customer.registered", {"data.country": "XX"}, "invalid_data", "data.country"),
    ("customer.registered", {"data.preferred_channel": "pigeon"}, "invalid_data", "data.preferred_channel"),
    ("customer.registered", {"data.industry": "x" * 101}, "invalid_data", "data.industry"),
    ("customer.registered", {"data.region": ""}, "invalid_data", "data.region"),
    ("customer.registered", {"data.relationship_since": "2999-01-01"}, "invalid_data", "data.relationship_since"),
    ("customer.registered", {"data.relationship_since": "1899-12-31"}, "invalid_data", "data.relationship_since"),
    ("customer.registered", {"data.relationship_since": "2020-02-30"}, "invalid_data", "data.relationship_since"),
    ("customer.interaction.recorded", {"data.kind": "return_trip"}, "invalid_data", "data.kind"),
    ("customer.account_manager.changed", {"data.manager_id": "not a staff id"}, "invalid_data", "data.manager_id"),
    ("customer.account_manager.changed", {"data.revision": 0}, "invalid_data", "data.revision"),
    ("customer.account_manager.changed", {"data.reason": ""}, "invalid_data", "data.reason"),
    ("customer.account_manager.changed", {"data.actor": None}, "invalid_data", "data.actor"),
    ("care.return_visit.due", {"data.due_on": "someday"}, "invalid_data", "data.due_on"),
    ("care.return_visit.due", {"data.cadence_days": 0}, "invalid_data", "data.cadence_days"),
    ("care.return_visit.due", {"data.visit_id": "has spaces"}, "invalid_data", "data.visit_id"),
    ("customer.registered", {"data.name": "x" * 201}, "invalid_data", "data.name"),
    ("customer.interaction.recorded", {"data.satisfaction": 6}, "invalid_data", "data.satisfaction"),
    ("customer.interaction.recorded", {"data.kind": "referral"}, "invalid_data", "data"),
    ("customer.interaction.recorded", {"data.direction": "sideways"}, "invalid_data", "data.direction"),
    ("complaint.submitted", {"data.severity": "apocalyptic"}, "invalid_data", "data.severity"),
    ("complaint.submitted", {"data.channel": "carrier_pigeon"}, "invalid_data", "data.channel"),
    ("complaint.submitted", {"data.subject": ""}, "invalid_data", "data.subject"),
    ("customer.tier.changed", {"data.dimension": "shoe_size"}, "invalid_data", "data.dimension"),
    ("customer.tier.changed", {"data.direction": "sideways"}, "invalid_data", "data.direction"),
    ("complaint.opened", {"data.priority": "urgent"}, "invalid_data", "data.priority"),
    ("complaint.staff_alert", {"data.alert": None}, "invalid_data", "data.alert"),
    ("complaint.staff_alert", {"data.alert.email": None}, "invalid_data", "data.alert"),
    ("complaint.staff_alert", {"data.alert.email": "not-an-email"}, "invalid_data", "data.alert.email"),
    ("complaint.staff_alert", {"data.alert.webhook": "file:///etc/passwd"}, "invalid_data", "data.alert.webhook"),
    ("complaint.staff_alert", {"data.alert.webhook": "http://127.0.0.1:@elsewhere.example/x"}, "invalid_data",
     "data.alert.webhook"),
    ("complaint.staff_alert", {"data.alert.rung": "ceo"}, "invalid_data", "data.alert.rung"),
    ("complaint.staff_alert", {"data.alert.staff_id": "has space"}, "invalid_data", "data.alert.staff_id"),
    ("complaint.staff_alert", {"data.alert.on_duty": None}, "invalid_data", "data.alert.on_duty"),
    ("complaint.opened", {"data.team": "{{ 7*7 }}"}, "invalid_data", "data.team"),
    ("notification.sent", {"data.channel": "fax"}, "invalid_data", "data.channel"),
    ("order.purchase.completed", {"time": "2026-11-23T10:15:00"}, "invalid_envelope", "time"),
    ("order.purchase.completed", {"time": "2027-11-23T10:15:00+00:00"}, "invalid_envelope", "time"),
    ("order.purchase.completed", {"time": "yesterday"}, "invalid_envelope", "time"),
    ("order.purchase.completed", {"subject": None}, "invalid_envelope", "subject"),
    ("order.purchase.completed", {"subject": "has space"}, "invalid_envelope", "subject"),
    ("order.purchase.completed", {"id": ""}, "invalid_envelope", "id"),
    ("order.purchase.completed", {"specversion": "0.3"}, "invalid_envelope", "specversion"),
    ("order.purchase.completed", {"dataschemaversion": 2}, "unsupported_version", "dataschemaversion"),
    ("order.purchase.completed", {"type": "order.purchase.teleported"}, "unknown_type", "type"),
    ("order.purchase.completed", {"type": None}, "unknown_type", "type"),
]


def event(event_type: str, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "specversion": "1.0", "id": "6f1c0b5e-6a0e-4d0c-9a5e-2b9d7c1e4f11", "source": "pos/shanghai-01",
        "type": event_type, "subject": "C-10001", "time": WHEN, "datacontenttype": "application/json",
        "dataschemaversion": 1, "data": copy.deepcopy(SAMPLES[event_type]),
    }
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        target = doc
        for part in parents:
            target = target[part]
        if value is None:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return doc


def structured(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def binary(doc: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
    headers = [(f"ce_{k}", str(v).encode()) for k, v in doc.items() if k != "data"]
    return json.dumps(doc["data"]).encode(), [*headers, ("content-type", b"application/json")]


def test_every_event_type_of_the_contract_has_a_model_and_a_sample() -> None:
    assert set(SAMPLES) == set(EVENT_TYPES)
    documented = {t for spec in TOPICS.values() for t in spec.events}
    assert documented == set(EVENT_TYPES)
    for cls in (*INBOUND_EVENTS, *OUTBOUND_EVENTS):
        assert cls.topic in TOPICS
        assert cls.model_fields["type"].default in TOPICS[cls.topic].events


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_a_valid_sample_of_each_type_parses_in_structured_mode(event_type: str) -> None:
    parsed = parse_event(structured(event(event_type)), key=b"C-10001", now=NOW)
    assert parsed.type == event_type
    assert type(parsed) is EVENT_TYPES[event_type]
    assert parsed.customer_id == "C-10001"


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_a_valid_sample_of_each_type_parses_in_binary_mode(event_type: str) -> None:
    value, headers = binary(event(event_type))
    parsed = parse_event(value, headers, now=NOW)
    assert parsed == parse_event(structured(event(event_type)), now=NOW)


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_serializing_an_event_and_parsing_it_again_gives_the_same_event(event_type: str) -> None:
    parsed = parse_event(structured(event(event_type)), now=NOW)
    assert parse_event(serialize_event(parsed), now=NOW) == parsed


@pytest.mark.parametrize(("event_type", "change", "code", "field"), BROKEN,
                         ids=[f"{t}:{next(iter(c))}={str(next(iter(c.values())))[:20]}" for t, c, _, _ in BROKEN])
def test_a_broken_rule_is_refused_with_its_code_and_field(event_type: str, change: dict[str, Any], code: str,
                                                          field: str) -> None:
    doc = event(event_type, **change)
    with pytest.raises(ContractError) as structured_error:
        parse_event(structured(doc), now=NOW)
    assert structured_error.value.code == code
    assert structured_error.value.field == field
    assert structured_error.value.detail.startswith(f"{field}: ")


@pytest.mark.parametrize(("event_type", "change", "code", "field"),
                         [b for b in BROKEN if b[1] and next(iter(b[1])).startswith("data.")][:12])
def test_binary_mode_applies_the_same_data_rules(event_type: str, change: dict[str, Any], code: str,
                                                 field: str) -> None:
    value, headers = binary(event(event_type, **change))
    with pytest.raises(ContractError) as error:
        parse_event(value, headers, now=NOW)
    assert (error.value.code, error.value.field) == (code, field)


def test_bytes_that_are_not_json_are_refused_as_invalid_json() -> None:
    for garbage in (b"\x00\xff garbage", b"{", "中文".encode("gbk")):
        with pytest.raises(ContractError) as error:
            parse_event(garbage, now=NOW)
        assert error.value.code == "invalid_json"


def test_json_that_is_not_an_object_is_refused_as_invalid_envelope() -> None:
    for value in (b"[1, 2]", b'"text"', b"42", b"null"):
        with pytest.raises(ContractError) as error:
            parse_event(value, now=NOW)
        assert error.value.code in {"invalid_envelope", "unknown_type"}


def test_an_oversized_value_is_refused_before_it_is_parsed() -> None:
    doc = event("order.purchase.completed")
    doc["data"]["store_id"] = "x" * MAX_EVENT_BYTES
    with pytest.raises(ContractError) as error:
        parse_event(structured(doc), now=NOW)
    assert error.value.code == "oversized"


def test_a_null_value_is_refused() -> None:
    with pytest.raises(ContractError) as error:
        parse_event(None)
    assert error.value.code == "invalid_envelope"


def test_a_message_key_that_differs_from_the_subject_is_refused() -> None:
    with pytest.raises(ContractError) as error:
        parse_event(structured(event("order.purchase.completed")), key=b"C-99999", now=NOW)
    assert (error.value.code, error.value.field) == ("key_mismatch", "subject")


def test_an_event_type_that_belongs_to_another_topic_is_refused_when_the_topic_is_known() -> None:
    value = structured(event("complaint.submitted"))
    with pytest.raises(ContractError) as error:
        parse_event(value, accept=TOPICS["orders.purchases.v1"].events, now=NOW)
    assert error.value.code == "unknown_type"


def test_a_time_within_the_allowed_clock_skew_is_accepted_and_beyond_it_refused() -> None:
    soon = (NOW + timedelta(minutes=10)).isoformat()
    later = (NOW + timedelta(minutes=20)).isoformat()
    assert parse_event(structured(event("order.purchase.completed", time=soon)), now=NOW)
    with pytest.raises(ContractError):
        parse_event(structured(event("order.purchase.completed", time=later)), now=NOW)


def test_old_events_are_accepted_so_that_history_can_be_replayed() -> None:
    parsed = parse_event(structured(event("order.purchase.completed", time="2010-12-01T08:26:00+00:00")), now=NOW)
    assert parsed.time.year == 2010


def test_amounts_keep_their_decimal_digits_and_serialize_as_strings() -> None:
    parsed = parse_event(structured(event("order.purchase.completed")), now=NOW)
    assert isinstance(parsed, PurchaseCompleted)
    assert str(parsed.data.total_amount) == "199.90"
    assert json.loads(serialize_event(parsed))["data"]["total_amount"] == "199.90"


def test_events_are_immutable() -> None:
    parsed = parse_event(structured(event("order.purchase.completed")), now=NOW)
    with pytest.raises(Exception):
        parsed.subject = "C-2"  # type: ignore[misc]


def test_unknown_cloudevents_extension_attributes_are_tolerated() -> None:
    doc = event("order.purchase.completed")
    doc["partitionkey"] = "C-10001"
    assert parse_event(structured(doc), now=NOW).type == "order.purchase.completed"


def test_a_traceparent_attribute_is_kept() -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert parse_event(structured({**event("order.purchase.completed"), "traceparent": trace}),
                       now=NOW).traceparent == trace


def test_a_traceparent_kafka_header_is_carried_onto_a_structured_event() -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    parsed = parse_event(structured(event("order.purchase.completed")), [("traceparent", trace.encode())], now=NOW)
    assert parsed.traceparent == trace
    ignored = parse_event(structured(event("order.purchase.completed")), [("traceparent", b"junk")], now=NOW)
    assert ignored.traceparent is None
