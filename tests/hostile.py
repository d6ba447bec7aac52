"""Hostile input shared by the parser fuzz tests and the dead-letter tests on the real broker.

Each ``Hostile`` is one Kafka record (value, key, headers) built around a valid event so that it
breaks exactly one rule, with the ``x-error`` code and the field the contract gives it.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from shared.contract import MAX_EVENT_BYTES

#: Deep enough to exhaust any recursive decoder, small enough (100 KiB) to pass the size check.
NESTING = 100_000
#: Names that must stay text: template syntax, terminal escapes, bidi override, CR/LF.
TEMPLATE_NAMES = ("{{ 7*7 }}", "{% for i in range(10) %}x{% endfor %}", "{{ ''.__class__.__mro__ }}")
CONTROL_NAME = "A\x07B\x1b[31mC\u202eD\r\nBcc: x@example.com"
#: Text the contract refuses (``invalid_data``, or a 422): U+0000 cannot be stored everywhere.
NUL_TEXT = "A\x00B"
DELETE = object()

#: One minimal valid ``data`` per event type used here.
DATA: dict[str, dict[str, Any]] = {
    "order.purchase.completed": {"order_id": "O-1", "total_amount": "199.90", "currency": "CNY", "channel": "online"},
    "order.purchase.refunded": {"refund_id": "R-1", "amount": "10.00", "currency": "CNY"},
    "customer.registered": {"name": "Li Lei", "locale": "zh-CN"},
    "customer.updated": {"locale": "en-US"},
    "customer.interaction.recorded": {"interaction_id": "I-1", "kind": "call", "channel": "phone",
                                      "direction": "outbound"},
    "complaint.submitted": {"channel": "online", "category": "delivery", "subject": "Parcel late"},
    "customer.profile.changed": {"name": "Li Lei", "status": "active", "locale": "zh-CN"},
    "customer.erased": {"erased_at": "2026-01-01T00:00:00+00:00"},
    "customer.classification": {"value_tier": "high", "vip": "regular",
                                "metrics": {"currency": "CNY", "spend_12m": "1200.00", "orders_12m": 3},
                                "policy_version": "2026.1", "updated_at": "2026-01-01T00:00:00+00:00"},
    "customer.tier.changed": {"dimension": "value_tier", "previous": "medium", "current": "high",
                              "direction": "upgrade", "reason": "spend", "policy_version": "2026.1",
                              "effective_at": "2026-01-01T00:00:00+00:00", "bulk": True,
                              "metrics": {"currency": "CNY", "spend_12m": "1200.00", "orders_12m": 3}},
    "complaint.opened": {"complaint_id": "CP-1", "status": "received", "priority": "p3"},
    # Reaches nobody by design: its only webhook is outside every allowed prefix, so no test calls it.
    "complaint.staff_alert": {"complaint_id": "CP-1", "status": "received", "priority": "p2", "team": "care",
                              "alert": {"kind": "escalated", "staff_id": "sup-1", "staff_name": "Wang Fang",
                                        "role": "supervisor", "rung": "supervisor", "on_duty": True,
                                        "webhook": "https://hooks.example.invalid/sup-1"}},
    "notification.sent": {"notification_id": "N-1", "trigger": "birthday", "channel": "email",
                          "template": "birthday"},
    "customer.account_manager.changed": {"manager_id": "am-xu", "manager_name": "Xu Bo", "reason": "vip",
                                         "actor": "rule", "changed_at": "2026-01-01T00:00:00+00:00", "revision": 1},
    "care.return_visit.due": {"visit_id": "return_visit:2026-01-01:C-1", "due_on": "2026-01-01", "cadence_days": 30},
}


@dataclass(frozen=True)
class Hostile:
    name: str
    value: bytes | None
    code: str
    field: str | None = None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def event(event_type: str, customer_id: str, *, at: datetime | None = None, **data: Any) -> dict[str, Any]:
    """A valid structured-mode event of ``event_type`` with unique ids."""
    body = copy.deepcopy(DATA[event_type])
    token = uuid.uuid4().hex[:12]
    for name in ("order_id", "refund_id", "interaction_id", "complaint_id", "notification_id"):
        if name in body:
            body[name] = f"{body[name]}-{token}"
    body.update(data)
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "tests/hostile", "type": event_type,
            "subject": customer_id, "time": (at or datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            "datacontenttype": "application/json", "dataschemaversion": 1, "data": body}


def dumps(doc: Any) -> bytes:
    # A lone surrogate becomes the invalid UTF-8 a careless producer would write, not an error here.
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


def changed(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``doc`` with dotted paths (``data__total_amount``) set, or removed with ``DELETE``."""
    out = copy.deepcopy(doc)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = out
        for part in parents:
            target = target[part]
        if value is DELETE:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return out


def binary_headers(doc: dict[str, Any]) -> tuple[tuple[str, bytes], ...]:
    # surrogatepass: a mutated field may hold a lone surrogate, which a header carries as raw bytes
    return tuple((f"ce_{k}", str(v).encode("utf-8", "surrogatepass")) for k, v in doc.items() if k != "data")


def envelope_corpus(base: dict[str, Any], stranger: dict[str, Any]) -> list[Hostile]:
    """Records that break the encoding, the size or the envelope, for any topic.

    ``base`` is a valid event of the topic, ``stranger`` a valid event of a type of another topic.
    """
    key = base["subject"].encode()
    raw = dumps(base)
    past = "0001-01-01T00:00:00+14:00"
    future = "9999-12-31T23:59:59-14:00"
    return [
        Hostile("invalid-utf8", raw.replace(b'"source": "', b'"source": "\xff\xfe\xc0\x80', 1), "invalid_json",
                key=key),
        Hostile("garbage-bytes", b"\x00\x9c\xffgarbage{", "invalid_json", key=key),
        Hostile("empty-value", b"", "invalid_json", key=key),
        Hostile("oversized", dumps({**base, "padding": "x" * (MAX_EVENT_BYTES + 1)}), "oversized", key=key),
        Hostile("deep-array", b"[" * NESTING, "invalid_json", key=key),
        Hostile("deep-object", b'{"a":' * (NESTING // 5), "invalid_json", key=key),
        Hostile("deep-closed-data", raw[:-1] + b', "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_json",
                key=key),
        Hostile("number-of-5000-digits", raw[:-1] + b', "x": ' + b"9" * 5000 + b"}", "invalid_json", key=key),
        Hostile("binary-deep-data", b"[" * NESTING, "invalid_json", key=key, headers=binary_headers(base)),
        Hostile("binary-number-of-5000-digits", b"9" * 5000, "invalid_json", key=key,
                headers=binary_headers(base)),
        Hostile("binary-bad-version", dumps(base["data"]), "unsupported_version", "dataschemaversion", key=key,
                headers=tuple((k, b"one" if k == "ce_dataschemaversion" else v) for k, v in binary_headers(base))),
        Hostile("json-array", b"[]", "invalid_envelope", "event", key=key),
        Hostile("json-string", b'"{{ 7*7 }}"', "invalid_envelope", "event", key=key),
        Hostile("time-far-past", dumps(changed(base, time=past)), "invalid_envelope", "time", key=key),
        Hostile("time-before-1970", dumps(changed(base, time="1969-12-31T23:59:59Z")), "invalid_envelope", "time",
                key=key),
        Hostile("time-far-future", dumps(changed(base, time=future)), "invalid_envelope", "time", key=key),
        Hostile("time-naive", dumps(changed(base, time="2026-01-01T10:00:00")), "invalid_envelope", "time",
                key=key),
        Hostile("time-not-a-time", dumps(changed(base, time="{{ now() }}")), "invalid_envelope", "time", key=key),
        Hostile("unknown-type", dumps(changed(base, type="order.purchase.teleported")), "unknown_type", "type",
                key=key),
        Hostile("type-missing", dumps(changed(base, type=DELETE)), "unknown_type", "type", key=key),
        Hostile("type-of-another-topic", dumps(changed(stranger, subject=base["subject"])), "unknown_type", "type",
                key=key),
        Hostile("version-2", dumps(changed(base, dataschemaversion=2)), "unsupported_version", "dataschemaversion",
                key=key),
        Hostile("key-mismatch", raw, "key_mismatch", "subject", key=b"someone-else"),
        Hostile("key-invalid-utf8", raw, "key_mismatch", "subject", key=b"\xff\xfe"),
        Hostile("subject-template", dumps(changed(base, subject="{{7*7}}")), "invalid_envelope", "subject",
                key=b"{{7*7}}"),
        Hostile("subject-control-characters", dumps(changed(base, subject="C-1\x00\x1b")), "invalid_envelope",
                "subject", key=key),
        Hostile("bad-traceparent", dumps(changed(base, traceparent="{{ 7*7 }}")), "invalid_envelope",
                "traceparent", key=key),
        Hostile("data-not-an-object", dumps(changed(base, data=[1, 2])), "invalid_data", "data", key=key),
        Hostile("data-unknown-field", dumps(changed(base, data__injected="{{ 7*7 }}")), "invalid_data",
                "data.injected", key=key),
    ]


def amount_corpus(base: dict[str, Any], amount: str = "total_amount") -> list[Hostile]:
    """Amounts and currencies that break the rules, for purchases and refunds."""
    key = base["subject"].encode()
    where = f"data.{amount}"

    def bad(name: str, value: Any, code: str = "invalid_data", at: str = where, **more: Any) -> Hostile:
        return Hostile(name, dumps(changed(base, **{f"data__{at.split('.')[-1]}": value}, **more)), code, at, key=key)

    return [
        bad("amount-float", 199.9),
        bad("amount-float-huge", 1e308),
        bad("amount-integer", 100),
        bad("amount-negative", "-1.00"),
        bad("amount-zero", "0"),
        bad("amount-enormous", "1" + "0" * 15),
        bad("amount-exponent-overflow", "1E+99999999999999"),
        bad("amount-exponent-underflow", "1E-99999999999999"),
        bad("amount-too-precise", "1.00001"),
        bad("amount-nan", "NaN"),
        bad("amount-infinity", "-Infinity"),
        bad("amount-too-long", "1" * 40),
        bad("amount-template", "{{ 7*7 }}"),
        bad("currency-unknown", "XXY", at="data.currency"),
        bad("currency-lower-case", "cny", at="data.currency"),
        bad("currency-too-long", "EURO", at="data.currency"),
    ]


# --- generated input ---------------------------------------------------------------------------------

#: Strings that reach the interesting branches of the field rules.
SPECIAL = st.sampled_from([
    "", " ", "1.0", "199.90", "-1", "0", "1E+99999999999999", "1e-9", "NaN", "sNaN", "Infinity", "9" * 40,
    "CNY", "cny", "XXY", "2026-11-23T10:15:00+08:00", "2026-11-23T10:15:00", "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00", "1969-12-31T23:59:59Z", "C-10001", "C 1", "order.purchase.completed",
    "complaint.opened", "+8613800138000", "a@example.com", "Asia/Shanghai", "zh-CN", "CN", "1990-02-30",
    "value_tier", "high", "resolved", "$where", *TEMPLATE_NAMES, CONTROL_NAME, "\x00", "\ud800", "x" * 300,
])
KEYS = st.sampled_from(["specversion", "id", "source", "type", "subject", "time", "dataschemaversion", "data",
                        "traceparent", "total_amount", "currency", "name", "items", "quantity", "metrics",
                        "customer_id", "status", "$set", "__class__"])
LEAVES = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**30) | st.floats()
          | st.text(max_size=20) | SPECIAL)
JSON = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(KEYS | st.text(max_size=8), inner, max_size=5), max_leaves=25)


@st.composite
def mutated(draw: st.DrawFn, bases: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A valid document with one to three of its values, at any depth, replaced, removed or added."""
    doc = copy.deepcopy(draw(bases))
    for _ in range(draw(st.integers(1, 3))):
        places: list[tuple[Any, Any]] = []
        containers: list[Any] = [doc]
        while containers:
            container = containers.pop()
            for name, inner in (container.items() if isinstance(container, dict) else enumerate(container)):
                places.append((container, name))
                if isinstance(inner, dict | list):
                    containers.append(inner)
        if not places:
            doc[draw(KEYS)] = draw(JSON)
            continue
        container, name = draw(st.sampled_from(places))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del container[name]
        elif action == "add" and isinstance(container, dict):
            container[draw(KEYS | st.text(max_size=8))] = draw(JSON)
        else:
            container[name] = draw(JSON)
    return doc
