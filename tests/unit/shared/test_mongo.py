"""Bulk updates go to the store in commands small enough for FerretDB v1's connection pool."""

from __future__ import annotations

from typing import Any

from pymongo import UpdateOne

from shared.mongo import UPDATES_PER_COMMAND, update_in_commands


class Collection:
    def __init__(self) -> None:
        self.commands: list[int] = []

    async def bulk_write(self, requests: list[Any], ordered: bool) -> None:
        assert not ordered
        self.commands.append(len(requests))


def updates(n: int) -> list[UpdateOne]:
    return [UpdateOne({"_id": i}, {"$set": {"x": 1}}, upsert=True) for i in range(n)]


async def test_no_command_carries_more_statements_than_the_store_can_hold_connections_for() -> None:
    collection = Collection()
    await update_in_commands(collection, updates(3 * UPDATES_PER_COMMAND + 1))  # type: ignore[arg-type]
    assert collection.commands == [UPDATES_PER_COMMAND] * 3 + [1]
    assert UPDATES_PER_COMMAND <= 32
