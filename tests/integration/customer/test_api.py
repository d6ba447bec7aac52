"""The HTTP API on the real store: every endpoint, every scope, every 4xx."""

from __future__ import annotations

import io
import json
import logging
from datetime import date, timedelta
from typing import Any

import pytest
import structlog
from pymongo import AsyncMongoClient

from services.customer.app import build_app
from services.customer.repository import list_bucket
from shared.logging import configure_logging
from tests.helpers import eventually, running

from .conftest import consuming, customer_settings, headers

pytestmark = pytest.mark.integration

PHONE, EMAIL, NAME, ADDRESS = "+8613912345678", "mei.han@example.com", "Han Meimei", "88 Nanjing Road West"


def profile(customer_id: str, **fields: Any) -> dict[str, Any]:
    return {"customer_id": customer_id, "name": NAME, "phone": PHONE, "email": EMAIL, "address": ADDRESS,
            "birthday": "1990-05-17", "locale": "zh-CN", "timezone": "Asia/Shanghai", "country": "CN",
            "preferred_channel": "sms", "consents": {"sms": True, "care_messages": True}, "needs": "custom",
            "tags": ["vip-lounge"], **fields}


ENDPOINTS = [
    ("POST", "/customers", {"customer_id": "C-x"}, "customers:write"),
    ("GET", "/customers", None, "customers:read"),
    ("GET", "/customers/lookup?email=a@example.com", None, "pii:read"),
    ("GET", "/customers/C-x", None, "customers:read"),
    ("PATCH", "/customers/C-x", {"locale": "en-US"}, "customers:write"),
    ("DELETE", "/customers/C-x", None, "customers:erase"),
    ("GET", "/customers/C-x/timeline", None, "customers:read"),
    ("POST", "/customers/C-x/interactions", {"kind": "call", "channel": "phone"}, "customers:write"),
    ("GET", "/customers/C-x/consents", None, "customers:read"),
    ("PUT", "/customers/C-x/consents", {"sms": False}, "customers:write"),
]


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
async def test_every_endpoint_answers_401_without_a_key_and_403_without_its_scope(
    infra: dict[str, str], unique: str, keys: dict[str, Any], method: str, path: str, body: Any, scope: str
) -> None:
    async with running(build_app(customer_settings(unique, keys["entries"]))) as client:
        missing = await client.request(method, path, json=body)
        unknown = await client.request(method, path, json=body, headers=headers("ck_not-a-key"))
        # "writer" holds customers:read and customers:write, "reader" only customers:read.
        lacking = keys["reader"] if scope != "customers:read" else keys["other"]
        forbidden = await client.request(method, path, json=body, headers=headers(lacking))
    assert missing.status_code == 401 and unknown.status_code == 401
    assert forbidden.status_code == 403
    assert scope in forbidden.json()["detail"]


async def test_a_created_customer_reads_back_in_full_with_pii_read_and_masked_without(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer = f"C-{unique}"
    async with running(build_app(customer_settings(unique, keys["entries"]))) as client:
        created = await client.post("/customers", json=profile(customer), headers=headers(keys["writer"]))
        full = await client.get(f"/customers/{customer}", headers=headers(keys["all"]))
        masked = await client.get(f"/customers/{customer}", headers=headers(keys["reader"]))
        again = await client.post("/customers", json=profile(customer), headers=headers(keys["writer"]))
        unknown = await client.get(f"/customers/C-nobody-{unique}", headers=headers(keys["reader"]))
        bad_id = await client.get("/customers/%20bad%20id", headers=headers(keys["reader"]))
        assigned = await client.post("/customers", json={"name": "No Id"}, headers=headers(keys["writer"]))
    assert created.status_code == 201
    # The creating key lacks pii:read, so even its own answer is masked.
    assert created.json()["phone"] == "+86*********78" and created.json()["email"] == "m***@example.com"
    body = full.json()
    assert (body["name"], body["phone"], body["email"], body["address"]) == (NAME, PHONE, EMAIL, ADDRESS)
    assert (body["status"], body["source"], body["version"], body["birthday"]) == ("active", "api", 1, "1990-05-17")
    assert body["consents"] == {"email": None, "sms": True, "care_messages": True, "marketing": None}
    assert body["summary"]["orders"] == 0 and body["classification"] is None
    view = masked.json()
    assert view["phone"] == "+86*********78" and view["email"] == "m***@example.com" and view["address"] == "***"
    assert view["name"] == NAME and view["locale"] == "zh-CN"
    assert again.status_code == 409
    assert unknown.status_code == 404
    assert bad_id.status_code == 422 and bad_id.json()["detail"][0]["loc"] == ["path", "customer_id"]
    assert assigned.status_code == 201 and assigned.json()["customer_id"].startswith("C-")


NEXT_MONTH = (date.today() + timedelta(days=30)).isoformat()
BAD_FIELDS = [
    ("phone", "+86123", "phone"),
    ("phone", "13800138000", "E.164"),
    ("email", "not-an-email", "email"),
    ("birthday", NEXT_MONTH, "birthday is in the future"),
    ("locale", "chinese", "BCP 47"),
    ("timezone", "Mars/Olympus_Mons", "unknown IANA time zone"),
    ("country", "XX", "ISO 3166-1"),
    ("name", "x" * 201, "at most 200 characters"),
    ("address", "x" * 501, "at most 500 characters"),
    ("tags", [f"t{i}" for i in range(51)], "at most 50 items"),
    ("preferred_channel", "pigeon", "'email', 'sms' or 'webhook'"),
    ("status", "erased", "Extra inputs are not permitted"),
    ("industry", "x" * 101, "at most 100 characters"),
    ("region", "", "at least 1 character"),
    ("relationship_since", NEXT_MONTH, "relationship_since is in the future"),
    ("relationship_since", "1899-12-31", "relationship_since is before 1900"),
    ("relationship_since", "2020-13-01", "valid date"),
]


@pytest.mark.parametrize(("field", "value", "rule"), BAD_FIELDS, ids=[f"{f}-{r}" for f, _, r in BAD_FIELDS])
async def test_bad_profile_input_gets_422_naming_the_field_and_the_rule(
    infra: dict[str, str], unique: str, keys: dict[str, Any], field: str, value: Any, rule: str
) -> None:
    customer = f"C-{unique}"
    async with running(build_app(customer_settings(unique, keys["entries"]))) as client:
        created = await client.post("/customers", json=profile(customer, **{field: value}),
                                    headers=headers(keys["writer"]))
        await client.post("/customers", json=profile(customer), headers=headers(keys["writer"]))
        patched = await client.patch(f"/customers/{customer}", json={field: value}, headers=headers(keys["writer"]))
        stored = await client.get(f"/customers/{customer}", headers=headers(keys["all"]))
    for response in (created, patched):
        assert response.status_code == 422
        error = response.json()["detail"][0]
        assert field in error["loc"]
        assert rule in error["msg"]
    assert stored.json()["version"] == 1  # nothing of the bad patch was kept


async def test_patch_changes_fields_null_clears_one_and_unknown_or_erased_customers_are_refused(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer = f"C-{unique}"
    writer, full = headers(keys["writer"]), headers(keys["all"])
    async with running(build_app(customer_settings(unique, keys["entries"]))) as client:
        await client.post("/customers", json=profile(customer), headers=writer)
        patched = await client.patch(f"/customers/{customer}", json={"locale": "en-US", "address": None},
                                     headers=full)
        unchanged = await client.patch(f"/customers/{customer}", json={"locale": "en-US"}, headers=full)
        missing = await client.patch(f"/customers/C-nobody-{unique}", json={"locale": "en-US"}, headers=writer)
        await client.delete(f"/customers/{customer}", headers=full)
        erased = await client.patch(f"/customers/{customer}", json={"locale": "en-GB"}, headers=writer)
    assert patched.status_code == 200
    assert (patched.json()["locale"], patched.json()["address"], patched.json()["version"]) == ("en-US", None, 2)
    assert patched.json()["name"] == NAME
    assert unchanged.json()["version"] == 2
    assert missing.status_code == 404
    assert erased.status_code == 410


async def test_lookup_finds_the_exact_phone_or_email_through_the_blind_index(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer = f"C-{unique}"
    full = headers(keys["all"])
    async with running(build_app(customer_settings(unique, keys["entries"]))) as client:
        await client.post("/customers", json=profile(customer), headers=full)
        await client.post("/customers", json=profile(f"C-other-{unique}", phone="+8613912345679",
                                                     email="someone@example.com"), headers=full)
        by_phone = await client.get("/customers/lookup", params={"phone": "+86 139 1234 5678"}, headers=full)
        by_email = await client.get("/customers/lookup", params={"email": "Mei.Han@Example.com"}, headers=full)
        nobody = await client.get("/customers/lookup", params={"email": "nobody@example.com"}, headers=full)
        neither = await client.get("/customers/lookup", headers=full)
        both = await client.get("/customers/lookup", params={"phone": PHONE, "email": EMAIL}, headers=full)
        bad_phone = await client.get("/customers/lookup", params={"phone": "+1 555"}, headers=full)
        bad_email = await client.get("/customers/lookup", params={"email": "nope"}, headers=full)
    assert [c["customer_id"] for c in by_phone.json()["items"]] == [customer]
    assert [c["customer_id"] for c in by_email.json()["items"]] == [customer]
    assert by_phone.json()["items"][0]["phone"] == PHONE
    assert nobody.json()["items"] == []
    for response, field in ((neither, "phone"), (both, "phone"), (bad_phone, "phone"), (bad_email, "email")):
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", field]


async def test_the_list_filters_by_tag_and_needs_and_pages_with_a_cursor(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    writer, reader = headers(keys["writer"]), headers(keys["reader"])
    async with running(build_app(customer_settings(unique, keys["entries"]))) as client:
        for i in range(5):
            await client.post("/customers", json=profile(f"C-{i}-{unique}", tags=["spring"] if i % 2 else ["autumn"],
                                                         needs="latent" if i < 2 else "standard",
                                                         phone=f"+861391234560{i}"), headers=writer)
        seen, cursor, pages = [], None, 0
        while True:
            page = await client.get("/customers", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                                    headers=reader)
            seen += [c["customer_id"] for c in page.json()["items"]]
            pages += 1
            cursor = page.json()["next_cursor"]
            if not cursor:
                break
        spring = await client.get("/customers", params={"tag": "spring"}, headers=reader)
        latent_spring = await client.get("/customers", params={"tag": "spring", "needs": "latent"}, headers=reader)
        bad_cursor = await client.get("/customers", params={"cursor": "!!"}, headers=reader)
        bad_needs = await client.get("/customers", params={"needs": "urgent"}, headers=reader)
        bad_limit = await client.get("/customers", params={"limit": 0}, headers=reader)
    # Pages walk the store's list buckets (each read through an index), ids in order within one.
    def listed(*ids: str) -> list[str]:  # the list's order: by bucket (each read through an index), then id
        return sorted(ids, key=lambda c: (list_bucket(c), c))

    assert seen == listed(*(f"C-{i}-{unique}" for i in range(5))) and pages == 3
    assert [c["customer_id"] for c in spring.json()["items"]] == listed(f"C-1-{unique}", f"C-3-{unique}")
    assert [c["customer_id"] for c in latent_spring.json()["items"]] == [f"C-1-{unique}"]
    assert all(c["phone"].startswith("+86***") for c in spring.json()["items"])
    for response, field in ((bad_cursor, "cursor"), (bad_needs, "needs"), (bad_limit, "limit")):
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", field]


async def test_b2b_fields_are_kept_shown_and_listed_by_industry_and_region(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    writer, reader = headers(keys["writer"]), headers(keys["reader"])
    b2b = {"industry": "manufacturing", "region": "East China", "relationship_since": "2018-04-01"}
    async with running(build_app(customer_settings(unique, keys["entries"]))) as client:
        created = await client.post("/customers", json=profile(f"B-{unique}", **b2b), headers=writer)
        await client.post("/customers", json=profile(f"R-{unique}", region="East China"), headers=writer)
        moved = await client.patch(f"/customers/R-{unique}", json={"region": "North China", "industry": "retail"},
                                   headers=writer)
        view = (await client.get(f"/customers/B-{unique}", headers=reader)).json()
        east = (await client.get("/customers", params={"region": "East China"}, headers=reader)).json()["items"]
        retail_north = (await client.get("/customers", params={"region": "North China", "industry": "retail"},
                                         headers=reader)).json()["items"]
        nobody = (await client.get("/customers", params={"industry": "finance"}, headers=reader)).json()["items"]
        too_long = await client.get("/customers", params={"region": "x" * 101}, headers=reader)
        cleared = await client.patch(f"/customers/B-{unique}", json={"relationship_since": None}, headers=writer)
    assert created.status_code == 201 and moved.status_code == 200
    assert {k: view[k] for k in b2b} == b2b and view["account_manager"] is None
    assert [c["customer_id"] for c in east] == [f"B-{unique}"]
    assert [c["customer_id"] for c in retail_north] == [f"R-{unique}"] and nobody == []
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == ["query", "region"]
    assert cleared.json()["relationship_since"] is None and cleared.json()["industry"] == "manufacturing"


async def test_the_consent_ledger_keeps_every_change_with_time_source_and_actor(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer = f"C-{unique}"
    writer = headers(keys["writer"])
    async with running(build_app(customer_settings(unique, keys["entries"]))) as client:
        await client.post("/customers", json=profile(customer), headers=writer)
        withdrawn = await client.put(f"/customers/{customer}/consents", json={"sms": False, "source": "call-centre"},
                                     headers=writer)
        current = await client.get(f"/customers/{customer}", headers=writer)
        ledger = await client.get(f"/customers/{customer}/consents", headers=writer)
        empty = await client.put(f"/customers/{customer}/consents", json={"source": "x"}, headers=writer)
        not_bool = await client.put(f"/customers/{customer}/consents", json={"sms": "maybe"}, headers=writer)
        unknown_key = await client.put(f"/customers/{customer}/consents", json={"fax": True}, headers=writer)
        missing = await client.get(f"/customers/C-nobody-{unique}/consents", headers=writer)
    assert withdrawn.json()["current"]["sms"] is False
    assert current.json()["consents"]["sms"] is False and current.json()["version"] == 2
    history = ledger.json()["history"]
    assert [(h["consent"], h["granted"], h["source"], h["actor"]) for h in history] == [
        ("sms", True, "api", "writer"), ("care_messages", True, "api", "writer"),
        ("sms", False, "call-centre", "writer")]
    assert [h["kind"] for h in history] == ["channel", "purpose", "channel"]
    assert history[0]["at"] <= history[2]["at"]
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "consents"]
    assert not_bool.status_code == 422 and not_bool.json()["detail"][0]["loc"] == ["body", "sms"]
    assert unknown_key.status_code == 422 and unknown_key.json()["detail"][0]["loc"] == ["body", "fax"]
    assert missing.status_code == 404


async def test_an_interaction_posted_is_published_and_joins_the_timeline_which_pages_newest_first(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer = f"C-{unique}"
    writer, full, reader = headers(keys["writer"]), headers(keys["all"]), headers(keys["reader"])
    app = build_app(customer_settings(unique, keys["entries"]))
    async with running(app) as client:
        await consuming(app)
        await client.post("/customers", json=profile(customer), headers=writer)
        posted = []
        for i, kind in enumerate(("call", "visit", "call")):
            response = await client.post(f"/customers/{customer}/interactions",
                                         json={"kind": kind, "channel": "phone", "summary": f"follow-up {i}",
                                               "interaction_id": f"I-{i}-{unique}"}, headers=writer)
            posted.append(response)

        async def three() -> list:
            items = (await client.get(f"/customers/{customer}/timeline", headers=full)).json()["items"]
            return items if len(items) == 3 else []

        entries = await eventually(three)
        first = await client.get(f"/customers/{customer}/timeline", params={"limit": 2}, headers=full)
        second = await client.get(f"/customers/{customer}/timeline",
                                  params={"limit": 2, "cursor": first.json()["next_cursor"]}, headers=full)
        masked = await client.get(f"/customers/{customer}/timeline", headers=reader)
        visits = await client.get(f"/customers/{customer}/timeline", params={"kind": "purchase"}, headers=reader)
        view = await client.get(f"/customers/{customer}", headers=reader)
        referral = await client.post(f"/customers/{customer}/interactions",
                                     json={"kind": "referral", "channel": "store"}, headers=writer)
        bad_score = await client.post(f"/customers/{customer}/interactions",
                                      json={"kind": "call", "channel": "phone", "satisfaction": 6}, headers=writer)
        bad_kind = await client.post(f"/customers/{customer}/interactions",
                                     json={"kind": "telepathy", "channel": "phone"}, headers=writer)
        long_summary = await client.post(f"/customers/{customer}/interactions",
                                         json={"kind": "call", "channel": "phone", "summary": "x" * 5001},
                                         headers=writer)
        nobody = await client.post(f"/customers/C-nobody-{unique}/interactions",
                                   json={"kind": "call", "channel": "phone"}, headers=writer)
        bad_cursor = await client.get(f"/customers/{customer}/timeline", params={"cursor": "e30="}, headers=reader)
        no_timeline = await client.get(f"/customers/C-nobody-{unique}/timeline", headers=reader)
    assert all(p.status_code == 202 for p in posted)
    assert [e["interaction_id"] for e in entries] == [f"I-2-{unique}", f"I-1-{unique}", f"I-0-{unique}"]
    assert entries[0]["summary"] == "follow-up 2" and entries[0]["interaction_kind"] == "call"
    paged = [e["id"] for e in first.json()["items"] + second.json()["items"]]
    assert paged == [e["id"] for e in entries] and second.json()["next_cursor"] is None
    assert all("summary" not in e for e in masked.json()["items"])
    assert visits.json()["items"] == []
    assert view.json()["summary"]["interactions"] == 3
    assert referral.status_code == 422 and "referred_customer_id" in referral.json()["detail"][0]["msg"]
    assert bad_score.status_code == 422 and bad_score.json()["detail"][0]["loc"] == ["body", "satisfaction"]
    assert bad_kind.status_code == 422 and bad_kind.json()["detail"][0]["loc"] == ["body", "kind"]
    assert long_summary.status_code == 422 and long_summary.json()["detail"][0]["loc"] == ["body", "summary"]
    assert nobody.status_code == 404 and no_timeline.status_code == 404
    assert bad_cursor.status_code == 422 and bad_cursor.json()["detail"][0]["loc"] == ["query", "cursor"]


async def test_erasure_removes_the_personal_data_and_repeating_it_is_harmless(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer = f"C-{unique}"
    full = headers(keys["all"])
    settings = customer_settings(unique, keys["entries"])
    async with running(build_app(settings)) as client:
        await client.post("/customers", json=profile(customer), headers=full)
        erased = await client.delete(f"/customers/{customer}", params={"reason": "customer request"}, headers=full)
        again = await client.delete(f"/customers/{customer}", headers=full)
        gone = await client.get(f"/customers/{customer}", headers=full)
        found = await client.get("/customers/lookup", params={"phone": PHONE}, headers=full)
        listed = await client.get("/customers", headers=full)
        recreated = await client.post("/customers", json=profile(customer), headers=full)
        missing = await client.delete(f"/customers/C-nobody-{unique}", headers=full)
    assert (erased.status_code, again.status_code, gone.status_code) == (204, 204, 410)
    assert found.json()["items"] == [] and listed.json()["items"] == []
    assert recreated.status_code == 410
    assert missing.status_code == 404
    raw = AsyncMongoClient(infra["MONGODB_URL"])
    try:
        doc = await raw[settings.database_name]["customers"].find_one({"_id": customer})
    finally:
        await raw.close()
    assert doc["status"] == "erased" and doc["erased_at"]
    for field in ("pii", "phone_bidx", "email_bidx", "birthday", "locale", "timezone", "tags", "consents"):
        assert field not in doc


async def test_the_raw_documents_hold_no_plaintext_personal_data(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer = f"C-{unique}"
    settings = customer_settings(unique, keys["entries"])
    app = build_app(settings)
    async with running(app) as client:
        await consuming(app)
        await client.post("/customers", json=profile(customer), headers=headers(keys["all"]))
        await client.post(f"/customers/{customer}/interactions",
                          json={"kind": "call", "channel": "phone", "summary": f"called {PHONE} about the order"},
                          headers=headers(keys["all"]))
        await eventually(lambda: _timeline_size(client, customer, keys["all"]))
    raw = AsyncMongoClient(infra["MONGODB_URL"])
    try:
        db = raw[settings.database_name]
        docs = [d for name in await db.list_collection_names() for d in await db[name].find().to_list(None)]
    finally:
        await raw.close()
    dump = json.dumps(docs, default=str)
    customer_doc = next(d for d in docs if d["_id"] == customer)
    assert customer_doc["pii"]["phone"]["k"] == "dev-1" and customer_doc["pii_kid"] == "dev-1"
    for secret in (PHONE, PHONE[1:], "13912345678", EMAIL, "mei.han", NAME, ADDRESS, "Nanjing"):
        assert secret not in dump


async def _timeline_size(client: Any, customer: str, key: str) -> int:
    return len((await client.get(f"/customers/{customer}/timeline", headers=headers(key))).json()["items"])


async def test_logs_captured_during_a_run_contain_no_personal_data(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    customer = f"C-{unique}"
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level, saved_config = root.handlers[:], root.level, structlog.get_config()
    configure_logging("DEBUG", "json", stream=stream)
    try:
        app = build_app(customer_settings(unique, keys["entries"]))
        full = headers(keys["all"])
        async with running(app) as client:
            await consuming(app)
            await client.post("/customers", json=profile(customer), headers=full)
            await client.patch(f"/customers/{customer}", json={"phone": "+8613912340000"}, headers=full)
            await client.post("/customers", json=profile(customer, email="bad"), headers=full)
            await client.get("/customers/lookup", params={"email": EMAIL}, headers=full)
            await client.post(f"/customers/{customer}/interactions",
                              json={"kind": "call", "channel": "phone", "summary": f"{NAME} at {ADDRESS}"},
                              headers=full)
            await eventually(lambda: _timeline_size(client, customer, keys["all"]))
            await client.delete(f"/customers/{customer}", headers=full)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_config)
    output = stream.getvalue()
    assert "customer_profile_changed" in output and "customer_erased" in output
    for secret in (PHONE, "13912340000", EMAIL, NAME, ADDRESS, "Nanjing"):
        assert secret not in output


async def test_the_openapi_and_asyncapi_documents_describe_every_endpoint_and_topic_without_a_key(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    async with running(build_app(customer_settings(unique, keys["entries"]))) as client:
        openapi = (await client.get("/openapi.json")).json()
        asyncapi = (await client.get("/asyncapi.json")).json()
    assert {"/customers", "/customers/lookup", "/customers/{customer_id}", "/customers/{customer_id}/timeline",
            "/customers/{customer_id}/interactions", "/customers/{customer_id}/consents"} <= set(openapi["paths"])
    channels = {c["address"]: c for c in asyncapi["channels"].values()}
    assert set(channels) == {"crm.customer-intake.v1", "orders.purchases.v1", "crm.interactions.v1",
                             "crm.customer-tiers.v1", "crm.complaints.v1", "crm.notifications.v1",
                             "crm.customers.v1", "crm.account-managers.v1"}
    assert all(c.get("description") for c in asyncapi["channels"].values())
