"""Hostile JSON bodies on every route of every service that takes one: a 4xx with a reason, never a 5xx.

Each route gets a corpus (every property of its documented schema set to each hostile value, each
required one left out, unknown ones added, and bodies that are no JSON object at all) and generated
bodies: a valid one with values at any depth replaced, removed or added. The routes act on a customer and a complaint that exist, so that a body
that passes validation reaches the service's own rules.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.complaints import visits
from services.tiering.handlers import SUBSCRIBED
from services.tiering.policy import DEFAULT_POLICY_FILE
from shared.contract.topics import ORDERS_PURCHASES
from tests.helpers import api_key, eventually, produce, skip_backlog
from tests.hostile import CONTROL_NAME, NUL_TEXT, TEMPLATE_NAMES, event, mutated
from tests.integration.service_apps import ALL_SCOPES, OPENAPI, SERVICES, build, operations, serving, settings_for

pytestmark = pytest.mark.integration
Served = tuple[str, httpx.AsyncClient, dict[str, str]]  # service, client, path parameters

KEY, ENTRY = api_key("fuzz", *ALL_SCOPES)
CUSTOMER = f"C-http-{uuid.uuid4().hex[:10]}"
#: One valid body per route; paths name the customer and the complaint the fixture creates.
VALID: dict[tuple[str, str, str], dict[str, Any]] = {
    ("customer", "POST", "/customers"): {
        "name": "Li Lei", "phone": "+8613800138000", "email": "li@example.com", "birthday": "1990-02-28",
        "locale": "zh-CN", "timezone": "Asia/Shanghai", "country": "CN", "address": "1 Nanjing Rd",
        "preferred_channel": "sms", "consents": {"email": True, "sms": True, "care_messages": True},
        "needs": "standard", "tags": ["tea"]},
    ("customer", "PATCH", "/customers/{customer_id}"): {"name": "Han Meimei", "locale": "en-US", "tags": ["vip"]},
    ("customer", "PUT", "/customers/{customer_id}/consents"): {"email": True, "sms": False, "care_messages": True,
                                                               "marketing": False, "source": "store/sh-01"},
    ("customer", "POST", "/customers/{customer_id}/interactions"): {"kind": "call", "channel": "phone",
                                                                    "summary": "Follow-up", "satisfaction": 4},
    ("tiering", "PUT", "/customers/{customer_id}/overrides/{dimension}"): {
        "value": "high", "mode": "floor", "reason": "Guest of the chairman", "expires_at": "2099-01-01T00:00:00Z"},
    ("tiering", "POST", "/policy"): {**json.loads(DEFAULT_POLICY_FILE.read_text()), "version": "fuzz"},
    ("complaints", "POST", "/complaints"): {
        "customer_id": CUSTOMER, "channel": "online", "category": "delivery", "severity": "high",
        "complexity": "complex", "subject": "Parcel late", "description": "A week late", "order_id": "O-1"},
    ("complaints", "POST", "/complaints/{complaint_id}/transitions"): {
        "to": "resolved", "actor": "ann", "resolution_summary": "Refunded", "root_cause": "logistics"},
    ("complaints", "POST", "/complaints/{complaint_id}/assignment"): {"assignee": "ann"},
    ("complaints", "POST", "/complaints/{complaint_id}/verification"): {"verifier": "bob"},
    ("complaints", "POST", "/complaints/{complaint_id}/comments"): {"text": "On its way", "author": "ann"},
    ("complaints", "POST", "/complaints/{complaint_id}/reopen"): {"reason": "customer_request"},
    ("complaints", "POST", "/complaints/{complaint_id}/feedback"): {"score": 2, "comment": "Slow"},
    ("complaints", "PUT", "/accounts/{customer_id}/manager"): {"manager_id": "am-xu", "reason": "Key account",
                                                               "actor": "ann"},
    ("complaints", "POST", "/tasks/{task_id}/outcome"): {"outcome": "completed", "channel": "visit",
                                                         "summary": "Renewal agreed", "satisfaction": 5,
                                                         "actor": "am-xu"},
    ("notifications", "POST", "/preview"): {
        "template": "tier_upgrade", "locale": "en-US", "channel": "email", "name": "Ann",
        "timezone": "Asia/Shanghai", "params": {"tier": "high"}},
    ("notifications", "POST", "/suppressions"): {"kind": "email", "value": "Ann@Example.com", "channel": "email",
                                                 "all_messages": False, "reason": "requested"},
}
#: Values no property should turn into a 5xx: wrong types, extremes, NaN, a lone surrogate, a MongoDB
#: operator, template syntax and control characters, deep nesting.
HOSTILE_VALUES: list[Any] = [
    None, 10**30, 1e308, float("nan"), "x" * 100_000, "\ud800", TEMPLATE_NAMES[0], CONTROL_NAME, NUL_TEXT, {"$gt": ""},
    ["$where"], "1E+99999999999999", "9999-12-31T23:59:59-14:00", json.loads("[" * 500 + "]" * 500),
]
#: Bodies that are not what any route takes, as raw bytes: each is refused with a 4xx.
NOT_A_BODY: dict[str, bytes] = {
    "array": b"[]", "null": b"null", "string": b'"{{ 7*7 }}"', "number": b"12", "nan": b"NaN",
    "empty": b"", "malformed": b'{"a": ', "invalid-utf8": b'{"name": "\xff\xfe"}', "deep": b"[" * 100_000,
    "deep-closed": b"[" * 5_000 + b"]" * 5_000, "huge": b'{"name": "' + b"x" * 2_000_000 + b'"}',
}
GENERATED = settings(max_examples=15, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def schema(service: str, method: str, path: str) -> tuple[list[str], list[str]]:
    """The properties of the documented body of a route, and the required ones."""
    document = json.loads((OPENAPI / f"{service}.json").read_text())
    ref = document["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return sorted(body["properties"]), sorted(body.get("required", ()))


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=SERVICES)
async def served(request: pytest.FixtureRequest, infra: dict[str, str]) -> AsyncIterator[Served]:
    """One service at a time, with the customer and the complaint its routes act on."""
    service, headers = request.param, {"X-API-Key": KEY}
    settings = settings_for(service, f"http_{uuid.uuid4().hex[:10]}", (ENTRY,))
    if service == "tiering":  # tiering learns of customers from Kafka only: a purchase, read from here on
        settings = settings.model_copy(update={"kafka_auto_offset_reset": "earliest"})
        await skip_backlog(settings, SUBSCRIBED)
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], ORDERS_PURCHASES,
                      [(CUSTOMER.encode(), event("order.purchase.completed", CUSTOMER))])
    app = build(service, settings)
    async with serving(app) as client:
        values = {"customer_id": CUSTOMER, "dimension": "value_tier", "complaint_id": "CP-none"}
        if service == "customer":
            created = await client.post("/customers", headers=headers,
                                        json={**VALID["customer", "POST", "/customers"], "customer_id": CUSTOMER})
            assert created.status_code == 201, created.text
        if service == "tiering":
            async def classified() -> bool:
                return (await client.get(f"/customers/{CUSTOMER}/classification", headers=headers)).is_success

            await eventually(classified, timeout=60)
        if service == "complaints":
            complaint = await client.post("/complaints", headers=headers,
                                          json=VALID["complaints", "POST", "/complaints"])
            assert complaint.status_code == 201, complaint.text
            values["complaint_id"] = complaint.json()["complaint_id"]
            # A return visit due for the customer, whose outcome the routes record.
            workflow = app.state.workflow
            visit = visits.new_visit(visit_id=f"return_visit:2026-03-02:{CUSTOMER}", customer_id=CUSTOMER,
                                     manager="am-xu", due_on=date(2026, 3, 2), cadence_days=30, at=workflow.now(),
                                     calendar=workflow.rules.calendar, days=2)
            assert await app.state.accounts.repo.add_task(visit)
            values["task_id"] = visit.task_id
        yield service, client, values


def refused_properly(response: httpx.Response) -> str | None:
    """None when the response is a success or a 4xx with a reason; what is wrong otherwise."""
    if response.status_code >= 500:
        return f"{response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        if not detail:
            return f"{response.status_code} without a reason: {response.text[:200]}"
    return None


def body_routes(service: str) -> list[tuple[str, str]]:
    return [(m, p) for m, p, op in operations(service) if "requestBody" in op]


def test_every_route_that_takes_a_body_has_a_valid_body_to_break() -> None:
    assert {(s, m, p) for s in SERVICES for m, p in body_routes(s)} == set(VALID)


async def test_hostile_values_in_each_property_and_bodies_that_are_no_object_get_a_4xx_with_a_reason(
        served: Served) -> None:
    service, client, values = served
    cases: list[tuple[str, str, str, bytes, str]] = []  # method, path, label, body, what is expected
    for method, path in body_routes(service):
        valid = VALID[service, method, path]
        properties, required = schema(service, method, path)
        cases.extend((method, path, f"without {name}", json.dumps({k: v for k, v in valid.items() if k != name})
                      .encode(), "422") for name in required)
        for name in properties:
            cases.extend((method, path, f"{name}={str(value)[:40]!r}", json.dumps({**valid, name: value}).encode(),
                          "no 5xx") for value in HOSTILE_VALUES)
        cases.extend((method, path, f"unknown property {name}", json.dumps({**valid, name: "1"}).encode(), "422")
                     for name in ("$where", "__proto__", "{{ 7*7 }}"))
        cases.extend((method, path, label, raw, "4xx") for label, raw in NOT_A_BODY.items())
    slots = asyncio.Semaphore(8)  # the requests wait on the store and the broker, not on this process

    async def run(method: str, path: str, label: str, body: bytes, expected: str) -> str | None:
        async with slots:
            response = await client.request(method, path.format(**values), content=body,
                                            headers={"X-API-Key": KEY, "content-type": "application/json"})
        if problem := refused_properly(response):
            return f"{method} {path} {label}: {problem}"
        if expected == "422" and response.status_code != 422 or expected == "4xx" and response.status_code < 400:
            return f"{method} {path} {label}: {response.status_code} instead of {expected}"
        return None

    wrong = [problem for problem in await asyncio.gather(*(run(*case) for case in cases)) if problem]
    assert not wrong, "\n".join(wrong)


async def test_generated_bodies_never_get_a_5xx(served: Served) -> None:
    service, client, values = served
    wrong: list[str] = []
    for method, path in body_routes(service):
        for body in generated(VALID[service, method, path]):
            response = await client.request(method, path.format(**values), content=json.dumps(body).encode(),
                                            headers={"X-API-Key": KEY, "content-type": "application/json"})
            if problem := refused_properly(response):
                wrong.append(f"{method} {path} {json.dumps(body)[:300]}: {problem}")
    assert not wrong, "\n".join(wrong)


def generated(valid: dict[str, Any]) -> list[dict[str, Any]]:
    """Bodies drawn before any is sent: Hypothesis runs no coroutine, and drawing on this thread while
    the services wait keeps their use of ``random`` out of its draws."""
    bodies: list[dict[str, Any]] = []

    @GENERATED
    @given(mutated(st.just(valid)))
    def draw(body: dict[str, Any]) -> None:
        bodies.append(body)

    draw()
    return bodies


@pytest.mark.parametrize("served", ["notifications"], indirect=True)
async def test_a_name_with_template_syntax_is_previewed_as_written(served: Served) -> None:
    _, client, _ = served
    for name in TEMPLATE_NAMES:
        for channel in ("email", "sms"):
            response = await client.post("/preview", headers={"X-API-Key": KEY}, json={
                "template": "tier_upgrade", "locale": "en-US", "channel": channel, "name": name,
                "params": {"tier": "{{ 6*7 }}"}})
            assert response.status_code == 200, response.text
            preview = response.json()
            assert name in preview["body"] and "49" not in preview["body"]
            assert "{{ 6*7 }}" in preview["body"] and "42" not in preview["body"] + preview["subject"]
