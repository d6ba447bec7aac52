"""Key rotation on the real store: everything resealed under the new key while the API keeps serving."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.customer.app import build_app
from services.customer.rotation import rotate_keys
from tests.helpers import eventually, running

from .conftest import consuming, customer_settings, headers

pytestmark = pytest.mark.integration
COUNT = 20


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def phone(i: int) -> str:
    return f"+861390000{i:04d}"


async def _raw_docs(url: str, database: str, unique: str) -> list[dict[str, Any]]:
    """This test's sealed documents (a concurrent test's customer may have reached the same store)."""
    client = AsyncMongoClient(url)
    try:
        db = client[database]
        docs = [d for name in ("customers", "timeline") for d in await db[name].find({"pii_kid": {"$ne": None}})
                .to_list(None)]
        return [d for d in docs if unique in d["_id"]]
    finally:
        await client.close()


async def _seed(settings: Any, keys: dict[str, Any], unique: str) -> None:
    app = build_app(settings)
    full = headers(keys["all"])
    async with running(app) as client:
        await consuming(app)
        for i in range(COUNT):
            await client.post("/customers", json={"customer_id": f"C-{i}-{unique}", "name": f"Person {i}",
                                                  "phone": phone(i), "address": f"{i} Harbour Road"}, headers=full)
        await client.post(f"/customers/C-0-{unique}/interactions",
                          json={"kind": "visit", "channel": "store", "summary": "tried the blue coat"}, headers=full)

        async def summarised() -> bool:
            items = (await client.get(f"/customers/C-0-{unique}/timeline", headers=full)).json()["items"]
            return bool(items)

        await eventually(summarised)


async def test_rotation_reseals_every_value_under_the_new_key_while_reads_and_writes_continue(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    old_key, new_key, blind = _key(), _key(), _key()
    before = customer_settings(unique, keys["entries"], pii_keys={"k1": old_key}, pii_active_key_id="k1",
                               blind_index_key=blind)
    await _seed(before, keys, unique)
    during = customer_settings(unique, keys["entries"], pii_keys={"k1": old_key, "k2": new_key},
                               pii_active_key_id="k2", blind_index_key=blind, rotation_batch_size=3)
    full = headers(keys["all"])
    app = build_app(during)
    async with running(app) as client:
        stop = asyncio.Event()
        reads: list[bool] = []
        writes: list[int] = []

        async def read_all_the_time() -> None:
            i = 0
            while not stop.is_set():
                response = await client.get(f"/customers/C-{i % COUNT}-{unique}", headers=full)
                reads.append(response.status_code == 200 and response.json()["phone"] == phone(i % COUNT))
                i += 1

        async def write_now_and_then() -> None:
            for locale in ("en-US", "en-GB", "zh-CN"):
                response = await client.patch(f"/customers/C-1-{unique}", json={"locale": locale}, headers=full)
                writes.append(response.status_code)
                await asyncio.sleep(0.01)

        readers = [asyncio.create_task(read_all_the_time()) for _ in range(3)]
        writer = asyncio.create_task(write_now_and_then())
        rewritten = await rotate_keys(app.state.repo, during.rotation_batch_size)
        await writer
        stop.set()
        await asyncio.gather(*readers)
        again = await rotate_keys(app.state.repo, during.rotation_batch_size)
        found = await client.get("/customers/lookup", params={"phone": phone(7)}, headers=full)
    assert len(reads) > COUNT and all(reads)
    assert writes == [200, 200, 200]
    # The customer written meanwhile may have been resealed by the write rather than the rotation.
    assert rewritten["customers"] >= COUNT - 1 and rewritten["timeline"] >= 1
    assert again == {"customers": 0, "timeline": 0}
    assert [c["customer_id"] for c in found.json()["items"]] == [f"C-7-{unique}"]

    docs = await _raw_docs(infra["MONGODB_URL"], during.database_name, unique)
    assert len(docs) == COUNT + 1
    assert {d["pii_kid"] for d in docs} == {"k2"}
    assert {sealed["k"] for d in docs for sealed in d["pii"].values()} == {"k2"}

    # The old key can go: everything reads with the new key alone.
    after = customer_settings(unique, keys["entries"], pii_keys={"k2": new_key}, pii_active_key_id="k2",
                              blind_index_key=blind)
    async with running(build_app(after)) as client:
        one = await client.get(f"/customers/C-1-{unique}", headers=full)
        timeline = await client.get(f"/customers/C-0-{unique}/timeline", headers=full)
    assert (one.json()["phone"], one.json()["address"], one.json()["locale"]) == (phone(1), "1 Harbour Road", "zh-CN")
    assert timeline.json()["items"][0]["summary"] == "tried the blue coat"


async def test_the_rotate_keys_command_reseals_from_the_command_line_and_is_idempotent(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    old_key, new_key, blind = _key(), _key(), _key()
    settings = customer_settings(unique, keys["entries"], pii_keys={"k1": old_key}, pii_active_key_id="k1",
                                 blind_index_key=blind)
    await _seed(settings, keys, unique)
    env = {**os.environ, "ENVIRONMENT": "production", "CUSTOMER_MONGODB_DATABASE": settings.database_name,
           "CUSTOMER_PII_KEYS": json.dumps({"k1": old_key, "k2": new_key}), "CUSTOMER_PII_ACTIVE_KEY_ID": "k2",
           "CUSTOMER_BLIND_INDEX_KEY": blind, "LOG_LEVEL": "WARNING"}

    async def command() -> dict[str, Any]:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.customer", "rotate-keys",
                                                       env=env, stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0
        return json.loads(out.decode().strip().splitlines()[-1])

    first, second = await command(), await command()
    assert first["rewritten"]["customers"] >= COUNT and first["rewritten"]["timeline"] >= 1
    assert second == {"rewritten": {"customers": 0, "timeline": 0}}
    docs = await _raw_docs(infra["MONGODB_URL"], settings.database_name, unique)
    assert len(docs) == COUNT + 1 and {d["pii_kid"] for d in docs} == {"k2"}


async def test_the_blind_index_key_rotates_lookups_finding_customers_before_during_and_after(
    infra: dict[str, str], unique: str, keys: dict[str, Any]
) -> None:
    pii, old_blind, new_blind = _key(), _key(), _key()
    before = customer_settings(unique, keys["entries"], pii_keys={"k1": pii}, pii_active_key_id="k1",
                               blind_index_key=old_blind)
    await _seed(before, keys, unique)
    full = headers(keys["all"])

    async def lookup(settings: Any, i: int) -> list[str]:
        async with running(build_app(settings)) as client:
            found = await client.get("/customers/lookup", params={"phone": phone(i)}, headers=full)
        return [c["customer_id"] for c in found.json()["items"]]

    # A new key alone does not find what the old one indexed: that is why the old one stays a while.
    alone = customer_settings(unique, keys["entries"], pii_keys={"k1": pii}, pii_active_key_id="k1",
                              blind_index_key=new_blind)
    assert await lookup(alone, 3) == []
    during = customer_settings(unique, keys["entries"], pii_keys={"k1": pii}, pii_active_key_id="k1",
                               blind_index_key=new_blind, blind_index_previous_keys=[old_blind],
                               rotation_batch_size=7)
    assert await lookup(during, 3) == [f"C-3-{unique}"]
    app = build_app(during)
    async with running(app):
        rewritten = await rotate_keys(app.state.repo, during.rotation_batch_size)
        again = await rotate_keys(app.state.repo, during.rotation_batch_size)
    assert rewritten["customers"] >= COUNT and again == {"customers": 0, "timeline": 0}
    # Every index made again: the new key alone finds everyone, and no document keeps an old index.
    assert [await lookup(alone, i) for i in (0, 3, 19)] == [[f"C-{i}-{unique}"] for i in (0, 3, 19)]
    client = AsyncMongoClient(infra["MONGODB_URL"])
    try:
        docs = await client[during.database_name]["customers"].find({"_id": {"$regex": unique}}).to_list(None)
    finally:
        await client.close()
    assert len(docs) == COUNT and {d["bidx_kid"] for d in docs} == {app.state.repo.cipher.blind_key_id}
