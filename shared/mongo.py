"""MongoDB plumbing: one ``AsyncMongoClient`` per process, indexes at start, idempotent writes.

Everything here stays inside what both MongoDB and FerretDB v1 support: no transactions, no change
streams, no TTL or partial indexes, no aggregation beyond ``$match``/``$group`` with ``$sum``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, IndexModel, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from .settings import ServiceSettings


@dataclass(frozen=True)
class Index:
    collection: str
    keys: tuple[tuple[str, int], ...]
    unique: bool = False
    name: str | None = None

    def model(self) -> IndexModel:
        options: dict[str, Any] = {"unique": self.unique}
        if self.name:
            options["name"] = self.name
        return IndexModel(list(self.keys), **options)


@dataclass
class Store:
    """A database of one service and the client that reaches it."""

    client: AsyncMongoClient[dict[str, Any]]
    db: AsyncDatabase[dict[str, Any]]
    indexes: list[Index] = field(default_factory=list)

    @classmethod
    def connect(cls, settings: ServiceSettings, indexes: Iterable[Index] = ()) -> Store:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            settings.mongodb_url.get_secret_value(),
            serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
            connectTimeoutMS=settings.mongodb_timeout_ms,
            appname=f"carecrm-{settings.service_name}",
            tz_aware=True,
        )
        return cls(client=client, db=client[settings.database_name], indexes=list(indexes))

    def __getitem__(self, name: str) -> AsyncCollection[dict[str, Any]]:
        return self.db[name]

    async def ensure_indexes(self) -> None:
        # One index per command: FerretDB v1 drops the connection when a multi-index createIndexes
        # names indexes that already exist, i.e. on every restart.
        for index in self.indexes:
            await self.db[index.collection].create_indexes([index.model()])

    async def ping(self) -> bool:
        try:
            await self.db.command("ping")
        except Exception:
            return False
        return True

    async def close(self) -> None:
        await self.client.close()


#: Statements per update command. FerretDB v1 holds a PostgreSQL connection for each statement of an
#: update command until the command ends: about fifty in one command exhaust its pool and hang it
#: (every client of the store with it, until FerretDB restarts).
UPDATES_PER_COMMAND = 16
DUPLICATE_KEY = 11000


async def update_in_commands(collection: AsyncCollection[dict[str, Any]], updates: Sequence[UpdateOne]) -> None:
    """``updates`` (unordered) in commands of at most ``UPDATES_PER_COMMAND``, one at a time. Not for
    upserts that may meet a duplicate key: FerretDB v1's answer to such a command lacks ``nModified``
    and PyMongo fails on it with a ``KeyError`` (``update_one`` raises ``DuplicateKeyError`` as it should)."""
    for start in range(0, len(updates), UPDATES_PER_COMMAND):
        await collection.bulk_write(list(updates[start:start + UPDATES_PER_COMMAND]), ordered=False)


async def insert_once(collection: AsyncCollection[dict[str, Any]], document: Mapping[str, Any]) -> bool:
    """Insert ``document`` keyed by its ``_id``; False when that ``_id`` was already there."""
    try:
        await collection.insert_one(dict(document))
    except DuplicateKeyError:
        return False
    return True


async def upsert_once(
    collection: AsyncCollection[dict[str, Any]], key: Mapping[str, Any], document: Mapping[str, Any]
) -> bool:
    """Write ``document`` under ``key`` only if nothing is there yet; True when it was written."""
    result = await collection.update_one(dict(key), {"$setOnInsert": dict(document)}, upsert=True)
    return result.upserted_id is not None


def index(collection: str, *keys: str | tuple[str, int], unique: bool = False, name: str | None = None) -> Index:
    """``index("ledger", "customer_id", ("time", -1), unique=True)``."""
    normalised = tuple(k if isinstance(k, tuple) else (k, ASCENDING) for k in keys)
    return Index(collection, normalised, unique=unique, name=name)
