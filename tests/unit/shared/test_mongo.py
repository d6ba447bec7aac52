"""Bulk updates go to the store in commands small enough for FerretDB v1's connection pool, and
writes of one document never overlap in a process."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from pymongo import DeleteOne, InsertOne, UpdateOne

from shared.mongo import UPDATES_PER_COMMAND, Collection as StoreCollection, update_in_commands


class Collection:
    def __init__(self) -> None:
        self.commands: list[int] = []

    async def bulk_write(self, requests: list[Any], ordered: bool) -> SimpleNamespace:
        assert not ordered
        self.commands.append(len(requests))
        return SimpleNamespace(matched_count=len(requests) - 1)  # one of each command missed


def updates(n: int) -> list[UpdateOne]:
    return [UpdateOne({"_id": i}, {"$set": {"x": 1}}, upsert=True) for i in range(n)]


async def test_no_command_carries_more_statements_than_the_store_can_hold_connections_for() -> None:
    collection = Collection()
    matched = await update_in_commands(collection, updates(3 * UPDATES_PER_COMMAND + 1))  # type: ignore[arg-type]
    assert collection.commands == [UPDATES_PER_COMMAND] * 3 + [1]
    assert matched == 3 * UPDATES_PER_COMMAND + 1 - 4  # what every command matched, added up
    assert UPDATES_PER_COMMAND <= 32


class Slow:
    """A collection whose writes take a moment and record which documents were being written."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.database = SimpleNamespace(name="db")
        self.writing: list[Any] = []
        self.overlaps: list[tuple[Any, Any]] = []

    async def _write(self, key: Any) -> None:
        for other in self.writing:
            if key == other or "*" in (key, other):
                self.overlaps.append((key, other))
        self.writing.append(key)
        await asyncio.sleep(0.01)
        self.writing.remove(key)

    async def update_one(self, filter_: dict[str, Any], update: Any, **_: Any) -> None:
        key = filter_.get("_id")
        key = key.get("$eq", "*") if isinstance(key, dict) else key
        await self._write(key)

    async def update_many(self, filter_: dict[str, Any], update: Any, **_: Any) -> None:
        await self._write("*")

    async def bulk_write(self, requests: list[Any], **_: Any) -> None:
        await self._write("*")

    async def find_one(self, filter_: dict[str, Any]) -> str:
        return "read"


async def test_writes_of_one_document_wait_for_each_other_and_a_write_of_many_waits_for_all() -> None:
    raw = Slow(f"slow-{id(object())}")
    things = StoreCollection(raw)  # type: ignore[arg-type]
    await asyncio.gather(
        *(things.update_one({"_id": f"d{i % 3}"}, {"$inc": {"n": 1}}) for i in range(12)),
        things.update_many({"customer_id": "c1"}, {"$unset": {"pii": ""}}),
        things.update_one({"_id": {"$in": ["d1", "d2"]}}, {"$set": {"x": 1}}),
        *(things.update_one({"_id": {"$eq": f"d{i}"}}, {"$set": {"y": 1}}) for i in range(3)))
    assert raw.overlaps == []
    assert await things.find_one({"_id": "d1"}) == "read"  # reads are the driver's own


async def test_different_documents_are_written_side_by_side() -> None:
    raw = Slow(f"slow-{id(object())}")
    things = StoreCollection(raw)  # type: ignore[arg-type]
    started = asyncio.get_running_loop().time()
    await asyncio.gather(*(things.update_one({"_id": f"d{i}"}, {"$set": {"x": 1}}) for i in range(20)))
    assert asyncio.get_running_loop().time() - started < 0.1  # 20 writes of 10 ms each, not one after another


async def test_a_bulk_write_holds_every_document_it_names_and_inserts_hold_none() -> None:
    raw = Slow(f"slow-{id(object())}")
    things = StoreCollection(raw)  # type: ignore[arg-type]
    await asyncio.gather(
        things.bulk_write([UpdateOne({"_id": "d1"}, {"$set": {"x": 1}}), DeleteOne({"_id": "d2"})]),
        things.update_one({"_id": "d1"}, {"$set": {"x": 2}}), things.update_one({"_id": "d2"}, {"$set": {"x": 2}}))
    assert raw.overlaps == []
    await things.bulk_write([InsertOne({"_id": "d9"})])  # nothing to read and rewrite: no gate, no wait
