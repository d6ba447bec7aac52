"""Hostile input to the envelope parser: whatever the bytes, an event or a ContractError, never a crash.

The properties run a few hundred generated records each; the corpus pins the cases an attacker or a
broken producer would try first.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.contract import (
    EVENT_TYPES,
    MAX_EVENT_BYTES,
    TOPICS,
    CloudEvent,
    ContractError,
    parse_event,
    serialize_event,
)
from shared.contract.types import MAX_FUTURE_SKEW, MIN_EVENT_TIME
from tests.hostile import (
    CONTROL_NAME,
    DATA,
    JSON,
    SPECIAL,
    TEMPLATE_NAMES,
    Hostile,
    amount_corpus,
    binary_headers,
    changed,
    dumps,
    envelope_corpus,
    event,
    mutated,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SUBJECT = "C-10001"
#: The codes a ContractError may carry; the first set names the offending field, the second is about
#: the whole value.
FIELD_CODES = {"invalid_envelope", "invalid_data", "unknown_type", "unsupported_version", "key_mismatch"}
VALUE_CODES = {"invalid_json", "oversized"}
TOPIC_TYPES = [frozenset(spec.events) for spec in TOPICS.values() if spec.events]
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(value: bytes | None, headers: Any = None, *, key: bytes | None = None,
          accept: frozenset[str] | None = None) -> CloudEvent | ContractError:
    """Parse, and hold the outcome to the contract: anything but an event or a ContractError fails."""
    try:
        parsed = parse_event(value, headers, key=key, accept=accept, now=NOW)
    except ContractError as exc:
        assert exc.code in FIELD_CODES | VALUE_CODES, exc
        assert exc.detail.strip(), exc
        if exc.code in VALUE_CODES:
            assert exc.field is None, exc
        elif value is not None:
            assert exc.field, exc
        if exc.code == "invalid_data":
            assert exc.field is not None and exc.field.startswith("data"), exc
        return exc
    assert isinstance(parsed, EVENT_TYPES[parsed.type])
    assert accept is None or parsed.type in accept
    assert key is None or key == parsed.subject.encode()
    assert parsed.time.utcoffset() is not None
    assert MIN_EVENT_TIME <= parsed.time <= NOW + MAX_FUTURE_SKEW
    # What was accepted survives its own serialisation: what a service republishes is valid again.
    assert parse_event(serialize_event(parsed), now=NOW) == parsed
    # And every time accepted has a UTC instant, which storing and comparing it needs.
    assert all(t.astimezone(UTC) for t in times(parsed.model_dump())), parsed
    return parsed


def times(value: Any) -> list[datetime]:
    if isinstance(value, dict):
        return [t for v in value.values() for t in times(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in times(v)]
    return [value] if isinstance(value, datetime) else []


#: A valid event of any type of the contract, to break.
EVENTS = st.sampled_from(sorted(DATA)).map(lambda t: event(t, SUBJECT, at=NOW - timedelta(hours=1)))


@FUZZ
@given(st.binary(max_size=2048), st.none() | st.binary(max_size=80))
def test_any_bytes_are_an_event_or_a_contract_error(value: bytes, key: bytes | None) -> None:
    check(value, key=key)


@FUZZ
@given(JSON)
def test_any_json_is_an_event_or_a_contract_error(doc: Any) -> None:
    check(json.dumps(doc).encode())


@FUZZ
@given(mutated(EVENTS), st.none() | st.sampled_from(TOPIC_TYPES),
       st.sampled_from([None, SUBJECT.encode(), b"C-2", b"\xff"]))
def test_a_valid_event_with_fields_broken_is_an_event_or_a_contract_error(
        doc: dict[str, Any], accept: frozenset[str] | None, key: bytes | None) -> None:
    check(dumps(doc), key=key, accept=accept)


@FUZZ
@given(mutated(EVENTS), st.binary(max_size=512) | JSON.map(lambda d: json.dumps(d).encode()),
       st.lists(st.tuples(st.sampled_from(["ce_type", "ce_time", "ce_subject", "ce_dataschemaversion", "ce_id",
                                           "ce_specversion", "traceparent", "ce_traceparent", "X-Other"]),
                          st.binary(max_size=40) | SPECIAL.map(lambda s: s.encode("utf-8", "surrogatepass"))),
                max_size=4))
def test_binary_mode_with_any_headers_and_data_is_an_event_or_a_contract_error(
        doc: dict[str, Any], value: bytes, extra: list[tuple[str, bytes]]) -> None:
    check(value, [*binary_headers(doc), *extra])


# --- the corpus --------------------------------------------------------------------------------------

BASE = event("order.purchase.completed", SUBJECT, at=NOW - timedelta(hours=1))
STRANGER = event("complaint.submitted", SUBJECT, at=NOW - timedelta(hours=1))
REFUND = event("order.purchase.refunded", SUBJECT, at=NOW - timedelta(hours=1))
CORPUS: list[Hostile] = [
    *envelope_corpus(BASE, STRANGER),
    *amount_corpus(BASE),
    *[Hostile(f"refund-{h.name}", h.value, h.code, h.field, h.key) for h in amount_corpus(REFUND, "amount")],
    Hostile("none-value", None, "invalid_envelope"),
    Hostile("one-byte-over-the-limit", b" " * (MAX_EVENT_BYTES - len(dumps(BASE)) + 1) + dumps(BASE),
            "oversized", key=SUBJECT.encode()),
    Hostile("time-beyond-the-clock-skew", dumps(changed(BASE, time=(NOW + MAX_FUTURE_SKEW + timedelta(seconds=1))
                                                        .isoformat())), "invalid_envelope", "time"),
    Hostile("name-too-long", dumps(changed(event("customer.registered", SUBJECT, at=NOW), data__name="x" * 201)),
            "invalid_data", "data.name"),
    Hostile("lone-surrogate-escape", dumps(BASE).replace(b'"O-1', b'"\\ud800'), "invalid_json"),
]


@pytest.mark.parametrize("hostile", CORPUS, ids=[h.name for h in CORPUS])
def test_each_hostile_record_of_the_corpus_is_refused_with_its_code_and_field(hostile: Hostile) -> None:
    outcome = check(hostile.value, hostile.headers or None, key=hostile.key,
                    accept=frozenset(TOPICS["orders.purchases.v1"].events))
    assert isinstance(outcome, ContractError), f"accepted: {outcome!r}"
    assert (outcome.code, outcome.field) == (hostile.code, hostile.field), outcome


def test_a_value_of_exactly_the_size_limit_is_not_refused_for_its_size() -> None:
    padded = b" " * (MAX_EVENT_BYTES - len(dumps(BASE))) + dumps(BASE)
    assert len(padded) == MAX_EVENT_BYTES
    assert isinstance(check(padded), CloudEvent)


@pytest.mark.parametrize("name", [*TEMPLATE_NAMES, CONTROL_NAME], ids=["expression", "statement", "dunder",
                                                                         "control-characters"])
def test_template_syntax_and_control_characters_in_a_name_are_accepted_as_plain_text(name: str) -> None:
    parsed = check(dumps(event("customer.registered", SUBJECT, at=NOW, name=name)))
    assert isinstance(parsed, CloudEvent)
    assert parsed.data.name == name.strip()  # type: ignore[attr-defined]


@pytest.mark.parametrize("when", ["1970-01-01T00:00:00Z", "1970-01-01T08:00:00+08:00",
                                  (NOW + MAX_FUTURE_SKEW).isoformat()], ids=["epoch", "epoch-shanghai", "skew-edge"])
def test_times_at_the_edges_of_the_rules_are_accepted(when: str) -> None:
    assert isinstance(check(dumps(changed(BASE, time=when))), CloudEvent)


def test_amounts_at_the_edges_of_the_rules_are_accepted() -> None:
    for amount in ("0.0001", "999999999999999.9999", " 12.50 "):
        parsed = check(dumps(changed(BASE, data__total_amount=amount)))
        assert isinstance(parsed, CloudEvent), amount


@pytest.mark.parametrize(("event_type", "field"), [("customer.erased", "erased_at"),
                                                   ("customer.classification", "updated_at"),
                                                   ("complaint.opened", "resolution_due_at")])
@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"], ids=["after", "before"])
def test_a_time_whose_utc_instant_is_beyond_the_calendar_is_refused_rather_than_left_to_fail_in_the_store(
        event_type: str, field: str, when: str) -> None:
    outcome = check(dumps(event(event_type, SUBJECT, at=NOW, **{field: when})))
    assert isinstance(outcome, ContractError)
    assert (outcome.code, outcome.field) == ("invalid_data", f"data.{field}")
