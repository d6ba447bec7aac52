"""API keys: 401 without a valid key, 403 without the scope, keys compared by hash."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from shared.auth import authenticate, new_key, require
from shared.settings import ApiKey, ServiceSettings

READER, WRITER = new_key(), new_key()
KEYS = (ApiKey.from_plaintext("reader", READER, {"things:read"}),
        ApiKey.from_plaintext("writer", WRITER, {"things:read", "things:write"}))


def app() -> FastAPI:
    api = FastAPI()
    api.state.settings = ServiceSettings(api_keys=KEYS)
    router = APIRouter()

    @router.get("/things", dependencies=[require("things:read")])
    async def read() -> dict[str, str]:
        return {"ok": "read"}

    @router.post("/things", dependencies=[require("things:write")])
    async def write() -> dict[str, str]:
        return {"ok": "written"}

    api.include_router(router)
    return api


@pytest.fixture
async def client():  # noqa: ANN201
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://t") as c:
        yield c


async def test_a_request_without_a_key_gets_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/things")
    assert response.status_code == 401
    assert (await client.get("/things", headers={"X-API-Key": "ck_unknown"})).status_code == 401


async def test_a_key_without_the_scope_gets_403_and_names_the_scope(client: httpx.AsyncClient) -> None:
    response = await client.post("/things", headers={"X-API-Key": READER})
    assert response.status_code == 403
    assert "things:write" in response.json()["detail"]


async def test_a_key_with_the_scope_gets_through(client: httpx.AsyncClient) -> None:
    assert (await client.get("/things", headers={"X-API-Key": READER})).json() == {"ok": "read"}
    assert (await client.post("/things", headers={"X-API-Key": WRITER})).json() == {"ok": "written"}


def test_keys_are_matched_by_their_hash_and_never_stored_in_plaintext() -> None:
    assert authenticate(KEYS, WRITER) is KEYS[1]
    assert authenticate(KEYS, None) is None
    assert all(READER not in key.model_dump_json() for key in KEYS)
    assert new_key() != new_key() and new_key().startswith("ck_")
