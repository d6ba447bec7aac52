"""The embedded store on the real PostgreSQL: every declared index is served where FerretDB queries.

FerretDB v1 filters with ``_jsonb -> 'field' @> value`` (``_jsonb #> '{a,b}' @> value`` for a dotted
path), which its own btree indexes cannot serve; ``deploy/local/postgres/mirror_gin.sql`` adds a GIN
index on that expression for every key FerretDB indexes. These tests hold the mirror to it and show
that the scan counter the hot-path tests rely on does see a query FerretDB cannot push down.
"""

from __future__ import annotations

import asyncio

import pytest
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.errors import DuplicateKeyError

from deploy.local.store import Postgres
from shared.mongo import Store, index, update_in_commands
from shared.settings import ServiceSettings
from tests.scans import scanned, settled

pytestmark = pytest.mark.integration


def _store(unique: str) -> tuple[Store, str]:
    database = f"test_infra_{unique}"
    settings = ServiceSettings(service_name="infra-test", mongodb_database=database)
    indexes = [index("things", "owner"), index("things", "meta.kind", "status"), index("things", "code", unique=True)]
    return Store.connect(settings, indexes), database


def _gin_expressions(database: str) -> set[str]:
    rows = Postgres().psql(
        f"SELECT indexdef FROM pg_indexes WHERE schemaname = '{database}' AND indexdef LIKE '%USING gin%'")
    return {line.split("USING gin ", 1)[1] for line in rows.splitlines() if line}


def _btrees(database: str) -> set[str]:
    rows = Postgres().psql(
        f"SELECT indexdef FROM pg_indexes WHERE schemaname = '{database}' AND indexdef LIKE '%USING btree%' "
        "AND tablename NOT LIKE '\\_ferretdb\\_%'")
    return {line.split("USING btree ", 1)[1] for line in rows.splitlines() if line}


def _analyze() -> None:
    Postgres().psql("ANALYZE")


async def test_every_key_of_every_declared_index_gets_a_gin_index_on_the_expression_ferretdb_filters_with(
        infra: dict[str, str], unique: str) -> None:
    store, database = _store(unique)
    try:
        await store.ensure_indexes()
        await store.ensure_indexes()  # a restart declares them again: nothing doubles
        assert _gin_expressions(database) == {
            "(((_jsonb -> '_id'::text))) WITH (fastupdate=off)",
            "(((_jsonb -> 'owner'::text))) WITH (fastupdate=off)",
            "(((_jsonb #> '{meta,kind}'::text[]))) WITH (fastupdate=off)",
            "(((_jsonb -> 'status'::text))) WITH (fastupdate=off)",
            "(((_jsonb -> 'code'::text))) WITH (fastupdate=off)",
        }
        # FerretDB's btrees serve none of its queries: only those that enforce uniqueness stay.
        assert _btrees(database) == {"(((_jsonb -> '_id'::text)))", "(((_jsonb -> 'code'::text)))"}
        listed = {i["name"] for i in await (await store.db["things"].list_indexes()).to_list(None)}
        assert listed == {"_id_", "owner_1", "meta.kind_1_status_1", "code_1"}
        await store["things"].insert_one({"_id": "a", "code": 1})
        with pytest.raises(DuplicateKeyError):
            await store["things"].insert_one({"_id": "b", "code": 1})
    finally:
        await store.client.drop_database(database)
        await store.close()


async def test_equality_lookups_read_no_whole_table_and_a_filter_ferretdb_keeps_to_itself_does(
        infra: dict[str, str], unique: str) -> None:
    store, database = _store(unique)
    things = store["things"]
    try:
        await store.ensure_indexes()
        await things.insert_many([{"_id": f"t{i}", "owner": f"o{i % 50}", "code": i,
                                   "status": "open" if i % 10 == 0 else "closed", "meta": {"kind": f"k{i % 7}"}}
                                  for i in range(2000)])
        # With statistics, as autovacuum gathers them sooner or later: a filter that matches most of
        # a table is rightly read whole by the planner, which is why hot paths filter selectively.
        await asyncio.to_thread(_analyze)
        before = await settled(database)
        assert await things.find_one({"_id": "t1234"}) is not None
        assert len(await things.find({"owner": "o7"}).to_list(None)) == 40
        assert len(await things.find({"meta.kind": "k3", "status": "open"}).to_list(None)) == 29
        await things.update_one({"_id": "t5"}, {"$set": {"status": "closed"}})
        await things.delete_one({"code": 6})
        assert scanned(before, await settled(database)) == {}

        before = await settled(database)
        assert len(await things.find({"owner": {"$in": ["o1", "o2"]}}).to_list(None)) == 80
        assert scanned(before, await settled(database)) == {"things": 1}
    finally:
        await store.client.drop_database(database)
        await store.close()


async def test_clients_with_hundreds_of_operations_in_flight_never_stall_the_store(
        infra: dict[str, str], unique: str) -> None:
    # FerretDB v1 deadlocks once every connection of its PostgreSQL pool is held by an operation
    # waiting for a second one; the embedded store's URL keeps each client's share small.
    database = f"test_infra_{unique}"
    clients = [AsyncMongoClient(infra["MONGODB_URL"]) for _ in range(8)]
    try:
        things = clients[0][database]["things"]
        await things.insert_many([{"_id": f"t{i}", "n": i} for i in range(200)])
        lookups = [client[database]["things"].find_one({"_id": f"t{i}"}) for client in clients for i in range(200)]
        found = await asyncio.wait_for(asyncio.gather(*lookups), timeout=120)
        assert sum(doc is not None for doc in found) == len(lookups)
    finally:
        await clients[0].drop_database(database)
        for client in clients:
            await client.close()


async def test_hundreds_of_updates_in_bulk_go_through_without_hanging_the_store(infra: dict[str, str],
                                                                                 unique: str) -> None:
    # One update command of a few hundred statements held a connection of FerretDB's pool for each
    # until the command ended, and hung it for every client; ``update_in_commands`` splits them.
    store, _ = _store(unique)
    things = store["things"]
    try:
        await things.insert_many([{"_id": f"t{i}", "at": 1} for i in range(500)])
        updates = [UpdateOne({"_id": f"t{i}", "at": 1}, {"$set": {"at": 5}}) for i in range(500)]
        await asyncio.wait_for(update_in_commands(things, updates), timeout=60)
        assert await things.count_documents({"at": 5}) == 500
        assert await store.ping()
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


async def test_writes_of_one_document_at_the_same_moment_all_take_effect_through_a_store(
        infra: dict[str, str], unique: str) -> None:
    # FerretDB v1 reads, updates in memory and writes the whole document back: side by side, the
    # last write erases the others. A store's collection writes one document at a time.
    store, _ = _store(unique)
    raw, gated = store.db["things"], store["things"]

    async def race(things: object, n: int) -> tuple[int, int]:
        lost = 0
        for i in range(n):
            await raw.insert_one({"_id": f"{n}-{id(things)}-{i}", "version": 1})
            key = f"{n}-{id(things)}-{i}"
            results = await asyncio.gather(
                things.update_one({"_id": key}, {"$set": {"a": 1}}),  # type: ignore[attr-defined]
                things.update_one({"_id": key, "version": 1}, {"$set": {"b": 1, "version": 2}}),  # type: ignore[attr-defined]
                things.update_one({"_id": key, "version": 1}, {"$set": {"c": 1, "version": 2}}),  # type: ignore[attr-defined]
                things.update_many({"_id": {"$eq": key}}, {"$inc": {"n": 1}}))  # type: ignore[attr-defined]
            doc = await raw.find_one({"_id": key})
            assert doc is not None
            conditional = sum(r.modified_count for r in results[1:3])
            lost += conditional != 1 or "a" not in doc or doc.get("n") != 1 or ("b" in doc) == ("c" in doc)
        counter = f"counter-{id(things)}"
        await raw.insert_one({"_id": counter, "n": 0})
        await asyncio.gather(*(things.update_one({"_id": counter}, {"$inc": {"n": 1}})  # type: ignore[attr-defined]
                               for _ in range(100)))
        return lost, (await raw.find_one({"_id": counter}) or {})["n"]

    try:
        assert await race(gated, 50) == (0, 100)
        lost, counted = await race(raw, 50)
        assert lost > 0 and counted < 100, "the store now applies updates atomically: the gate may go"
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
