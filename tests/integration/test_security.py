"""API keys on every route of every committed OpenAPI document, against the running services.

Each protected route answers 401 without a valid key and 403 to a key that holds every scope but one
it needs, before it looks at the path, the query or the body; a key with exactly its scopes is not
refused, so the test cannot pass with authorisation refusing everything.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from tests.helpers import api_key
from tests.integration.service_apps import ALL_SCOPES, SERVICES, build, operations, serving, settings_for

pytestmark = pytest.mark.integration

Route = tuple[str, str, str]  # service, METHOD, path
Served = tuple[str, FastAPI, httpx.AsyncClient]

#: The scopes each route needs, as the code declares them; the test holds the documents to this table.
SCOPES: dict[Route, frozenset[str]] = {route: frozenset(scopes) for route, scopes in {
    ("customer", "GET", "/customers"): {"customers:read"},
    ("customer", "POST", "/customers"): {"customers:write"},
    ("customer", "GET", "/customers/lookup"): {"customers:read", "pii:read"},
    ("customer", "GET", "/customers/{customer_id}"): {"customers:read"},
    ("customer", "PATCH", "/customers/{customer_id}"): {"customers:write"},
    ("customer", "DELETE", "/customers/{customer_id}"): {"customers:erase"},
    ("customer", "GET", "/customers/{customer_id}/timeline"): {"customers:read"},
    ("customer", "POST", "/customers/{customer_id}/interactions"): {"customers:write"},
    ("customer", "GET", "/customers/{customer_id}/consents"): {"customers:read"},
    ("customer", "PUT", "/customers/{customer_id}/consents"): {"customers:write"},
    ("tiering", "GET", "/customers/{customer_id}/classification"): {"tiers:read"},
    ("tiering", "GET", "/customers/{customer_id}/tier-history"): {"tiers:read"},
    ("tiering", "PUT", "/customers/{customer_id}/overrides/{dimension}"): {"tiers:write"},
    ("tiering", "DELETE", "/customers/{customer_id}/overrides/{dimension}"): {"tiers:write"},
    ("tiering", "GET", "/policy"): {"tiers:read"},
    ("tiering", "POST", "/policy"): {"policy:write"},
    ("tiering", "POST", "/reclassify"): {"policy:write"},
    ("tiering", "POST", "/population/refresh"): {"policy:write"},
    ("tiering", "GET", "/reports/segments"): {"tiers:read"},
    ("tiering", "GET", "/reports/periods"): {"tiers:read"},
    ("complaints", "GET", "/complaints"): {"complaints:read"},
    ("complaints", "POST", "/complaints"): {"complaints:write"},
    ("complaints", "GET", "/complaints/{complaint_id}"): {"complaints:read"},
    ("complaints", "POST", "/complaints/{complaint_id}/transitions"): {"complaints:write"},
    ("complaints", "POST", "/complaints/{complaint_id}/assignment"): {"complaints:write"},
    ("complaints", "POST", "/complaints/{complaint_id}/verification"): {"complaints:write"},
    ("complaints", "POST", "/complaints/{complaint_id}/comments"): {"complaints:write"},
    ("complaints", "POST", "/complaints/{complaint_id}/reopen"): {"complaints:write"},
    ("complaints", "POST", "/complaints/{complaint_id}/feedback"): {"complaints:write"},
    ("complaints", "GET", "/reports/complaints"): {"complaints:read"},
    ("complaints", "GET", "/queues/agents/{staff_id}"): {"complaints:read"},
    ("complaints", "GET", "/queues/teams/{team}"): {"complaints:read"},
    ("complaints", "GET", "/staff"): {"complaints:read"},
    ("complaints", "GET", "/accounts/{customer_id}"): {"complaints:read"},
    ("complaints", "PUT", "/accounts/{customer_id}/manager"): {"complaints:write"},
    ("complaints", "GET", "/tasks/{task_id}"): {"complaints:read"},
    ("complaints", "POST", "/tasks/{task_id}/outcome"): {"complaints:write"},
    ("notifications", "GET", "/customers/{customer_id}/notifications"): {"notifications:read"},
    ("notifications", "POST", "/preview"): {"notifications:read"},
    ("notifications", "GET", "/suppressions"): {"notifications:read"},
    ("notifications", "POST", "/suppressions"): {"notifications:write"},
    ("notifications", "DELETE", "/suppressions/{suppression_id}"): {"notifications:write"},
    ("notifications", "GET", "/reports/notifications"): {"notifications:read"},
}.items()}

#: Routes without a key, by design: probes and the service's own documents, which orchestrators and
#: scrapers read without credentials, and the one-click unsubscribe and survey links of a message,
#: which carry a token signed for their customer instead of a key.
PUBLIC: frozenset[Route] = frozenset({
    *((service, "GET", path) for service in SERVICES for path in ("/health", "/metrics", "/asyncapi.json")),
    ("notifications", "POST", "/unsubscribe"),
    ("notifications", "GET", "/surveys"),
    ("notifications", "POST", "/surveys"),
})
#: Public routes that answer only with their signed link's fields.
SIGNED = ("/unsubscribe", "/surveys")
#: FastAPI's own pages, outside the documents they serve: the OpenAPI document and its viewers.
UNDOCUMENTED = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})

PLAUSIBLE = {"customer_id": "C-sec-1", "complaint_id": "CP-sec-1", "dimension": "value_tier",
             "suppression_id": "S-sec-1", "staff_id": "agent-zhao", "team": "care",
             "task_id": "return_visit:2026-01-01:C-sec-1"}
#: Values the route itself would refuse with 422: the key is checked first all the same.
IMPLAUSIBLE = {"customer_id": "not a customer", "complaint_id": "{{7*7}}", "dimension": "shoe_size",
               "suppression_id": "x" * 400, "staff_id": "x" * 400, "team": "{{7*7}}", "task_id": "{{7*7}}"}
#: Required query parameters, so that the right key meets the route itself.
QUERY: dict[Route, dict[str, str]] = {
    ("customer", "GET", "/customers/lookup"): {"email": "nobody@example.com"},
    ("complaints", "GET", "/reports/complaints"): {"from": "2026-01-01T00:00:00+00:00",
                                                   "to": "2026-02-01T00:00:00+00:00"},
}

EXACT = {scopes: api_key("exact-" + "+".join(sorted(scopes)), *scopes) for scopes in set(SCOPES.values())}
ALL_BUT = {scope: api_key(f"all-but-{scope}", *(ALL_SCOPES - {scope})) for scope in ALL_SCOPES}
ENTRIES = tuple(entry for _, entry in (*EXACT.values(), *ALL_BUT.values()))


def routes(service: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for method, path, op in operations(service) if (service, method, path) in SCOPES]


def url(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


def bodies(op: dict[str, Any]) -> list[dict[str, Any]]:
    """Request variants of one route: no body, a minimal JSON body, and ones refused as no JSON."""
    if "requestBody" not in op:
        return [{}]
    refused = (b"{not json", b"\xff\xfe" * 10, b"[" * 10_000, b'{"x": NaN}', b'{"x": "\\ud800"}')
    return [{"json": {}}, *({"content": raw, "headers": {"content-type": "application/json"}} for raw in refused)]


async def send(client: httpx.AsyncClient, method: str, path: str, key: str | None,
               variant: dict[str, Any], params: dict[str, str] | None = None) -> httpx.Response:
    headers = {**variant.get("headers", {}), **({"X-API-Key": key} if key is not None else {})}
    return await client.request(method, path, headers=headers, params=params,
                                **{k: v for k, v in variant.items() if k != "headers"})


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=SERVICES)
async def served(request: pytest.FixtureRequest, infra: dict[str, str]) -> AsyncIterator[Served]:
    """One service at a time, so that none consumes what another publishes meanwhile."""
    service = request.param
    app = build(service, settings_for(service, f"sec_{uuid.uuid4().hex[:10]}", ENTRIES))
    async with serving(app) as client:
        yield service, app, client


def test_the_committed_documents_list_exactly_the_protected_routes_of_the_table_and_the_public_ones() -> None:
    documented: dict[Route, dict[str, Any]] = {(s, m, p): op for s in SERVICES for m, p, op in operations(s)}
    assert not set(SCOPES) & PUBLIC
    assert set(documented) == set(SCOPES) | PUBLIC, set(documented) ^ (set(SCOPES) | PUBLIC)
    for route, op in documented.items():
        assert bool(op.get("security")) == (route in SCOPES), route


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_serves_the_routes_of_its_committed_document_and_only_fastapis_own_pages_besides(
        service: str, unique: str) -> None:
    app = build(service, settings_for(service, unique))
    served = {(m.upper(), p) for p, item in app.openapi()["paths"].items() for m in item}
    assert served == {(m, p) for m, p, _ in operations(service)}
    assert {getattr(r, "path", None) for r in app.routes} - {None} == UNDOCUMENTED


async def test_every_protected_route_answers_401_without_a_key_or_with_an_unknown_one(served: Served) -> None:
    service, _, client = served
    wrong: list[str] = []
    for method, path, op in routes(service):
        for values in (PLAUSIBLE, IMPLAUSIBLE):
            for key in (None, "", "ck_not-a-key-anyone-was-given", EXACT[SCOPES[service, method, path]][0] + "x"):
                for variant in bodies(op):
                    response = await send(client, method, url(path, values), key, variant)
                    if response.status_code != 401 or response.headers.get("www-authenticate") != "X-API-Key":
                        wrong.append(f"{method} {url(path, values)} key={key!r} {list(variant)}: "
                                     f"{response.status_code} {response.text[:120]}")
    assert not wrong, "\n".join(wrong)


async def test_every_protected_route_answers_403_to_a_key_with_every_scope_but_one_it_needs(served: Served) -> None:
    service, _, client = served
    wrong: list[str] = []
    for method, path, op in routes(service):
        for missing in SCOPES[service, method, path]:
            for values in (PLAUSIBLE, IMPLAUSIBLE):
                for variant in bodies(op):
                    response = await send(client, method, url(path, values), ALL_BUT[missing][0], variant)
                    if response.status_code != 403 or missing not in response.json().get("detail", ""):
                        wrong.append(f"{method} {url(path, values)} without {missing} {list(variant)}: "
                                     f"{response.status_code} {response.text[:120]}")
    assert not wrong, "\n".join(wrong)


async def test_a_key_with_exactly_the_scopes_of_a_route_is_not_refused_on_it(served: Served) -> None:
    service, _, client = served
    wrong: list[str] = []
    for method, path, op in routes(service):
        key = EXACT[SCOPES[service, method, path]][0]
        variant = {"json": {}} if "requestBody" in op else {}
        response = await send(client, method, url(path, PLAUSIBLE), key, variant, QUERY.get((service, method, path)))
        if response.status_code in (401, 403) or response.status_code >= 500:
            wrong.append(f"{method} {url(path, PLAUSIBLE)}: {response.status_code} {response.text[:120]}")
    assert not wrong, "\n".join(wrong)


async def test_the_public_routes_answer_without_a_key(served: Served) -> None:
    service, _, client = served
    for method, path, _ in operations(service):
        if (service, method, path) not in PUBLIC or path in SIGNED:
            continue
        response = await client.request(method, path)
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
    for path in UNDOCUMENTED - {"/docs/oauth2-redirect"}:
        assert (await client.get(path)).status_code == 200, path


@pytest.mark.parametrize("served", ["notifications"], indirect=True)
async def test_the_unsubscribe_link_needs_the_token_signed_for_its_customer_instead_of_a_key(served: Served) -> None:
    _, app, client = served
    customer = "C-sec-unsubscribe"
    forged = await client.post("/unsubscribe", params={"customer_id": customer, "token": "0" * 32})
    assert forged.status_code == 403
    other = app.state.workflow.unsubscribe_url("C-sec-someone-else").split("token=")[-1]
    assert (await client.post("/unsubscribe", params={"customer_id": customer, "token": other})).status_code == 403
    token = app.state.workflow.unsubscribe_url(customer).split("token=")[-1]
    assert (await client.post("/unsubscribe", params={"customer_id": customer, "token": token})).status_code == 204
