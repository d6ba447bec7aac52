"""MongoDB plumbing: one ``AsyncMongoClient`` per process, indexes at start, idempotent writes.

Everything here stays inside what both MongoDB and FerretDB v1 support: no transactions, no change
streams, no TTL or partial indexes, no aggregation beyond ``$match``/``$group`` with ``$sum``.

FerretDB v1 does not apply an update atomically: it reads the matching documents, applies the
update in its own memory, then writes each whole document back by ``_id``. Two updates of one
document at the same moment both read the old one and the second write erases the first (measured:
two concurrent ``$set`` of different fields lose one in 19 of 20 tries, both conditional
``{"version": n}`` updates report a match, 100 concurrent ``$inc`` add about 30). A collection of a
``Store`` therefore writes one document at a time in this process, and a write that is not keyed by
one ``_id`` alone. That makes every single-document write of a service atomic on the embedded store
as long as one process writes its database, which is how it runs; MongoDB needs none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, IndexModel, InsertOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from .batch import Remembered
from .locks import KeyedLocks
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

    def __getitem__(self, name: str) -> Collection:
        return Collection(self.db[name])

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


class _Gate:
    """The writes of one collection: documents side by side, each one write at a time; a write of
    many documents (or of a filter without one ``_id``) alone."""

    def __init__(self) -> None:
        self._documents = KeyedLocks()
        self._idle = asyncio.Condition()
        self._keyed = 0
        self._whole = False
        self._wanted = 0  # whole-collection writes waiting: new document writes queue behind them

    @contextlib.asynccontextmanager
    async def keyed(self, keys: Sequence[Any]) -> AsyncIterator[None]:
        async with self._idle:
            await self._idle.wait_for(lambda: not self._whole and not self._wanted)
            self._keyed += 1
        try:
            async with contextlib.AsyncExitStack() as stack:
                for key in sorted(set(keys), key=repr):  # one order for all: no two writers wait on each other
                    await stack.enter_async_context(self._documents(key))
                yield
        finally:
            async with self._idle:
                self._keyed -= 1
                self._idle.notify_all()

    @contextlib.asynccontextmanager
    async def whole(self) -> AsyncIterator[None]:
        async with self._idle:
            self._wanted += 1
            try:
                await self._idle.wait_for(lambda: not self._whole and not self._keyed)
            finally:
                self._wanted -= 1
            self._whole = True
        try:
            yield
        finally:
            async with self._idle:
                self._whole = False
                self._idle.notify_all()

    def around(self, filters: Sequence[Mapping[str, Any] | None]) -> contextlib.AbstractAsyncContextManager[None]:
        keys = [_document_key(f) for f in filters]
        if any(key is _NO_KEY for key in keys):
            return self.whole()
        return self.keyed(keys)


_NO_KEY = object()
#: Per event loop (asyncio locks belong to one), per database and collection: shared by every
#: ``Store`` of this process that reaches the same collection.
_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], _Gate]] = \
    weakref.WeakKeyDictionary()


def _document_key(filter_: Mapping[str, Any] | None) -> Any:
    """The one ``_id`` a filter names by equality (hashable), else ``_NO_KEY``."""
    value = (filter_ or {}).get("_id", _NO_KEY)
    if isinstance(value, Mapping):
        value = value.get("$eq", _NO_KEY) if set(value) == {"$eq"} else _NO_KEY
    try:
        hash(value)
    except TypeError:
        return _NO_KEY
    return value


def _gate(collection: AsyncCollection[dict[str, Any]]) -> _Gate:
    gates = _GATES.setdefault(asyncio.get_running_loop(), {})
    key = (collection.database.name, collection.name)
    gate = gates.get(key)
    if gate is None:
        gate = gates[key] = _Gate()
    return gate


class Collection:
    """An ``AsyncCollection`` whose updates, replacements and deletions of one document never
    overlap in this process (see the module's note); reads and inserts are the driver's own."""

    _READ_MODIFY_WRITE = frozenset({"update_one", "update_many", "replace_one", "delete_one", "delete_many",
                                    "find_one_and_update", "find_one_and_replace", "find_one_and_delete"})

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self.raw = collection

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.raw, name)
        if name not in self._READ_MODIFY_WRITE:
            return attribute

        async def gated(filter_: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
            async with _gate(self.raw).around([filter_]):
                return await attribute(filter_, *args, **kwargs)

        return gated

    async def bulk_write(self, requests: Sequence[Any], **kwargs: Any) -> Any:
        # Inserts carry no filter and need no gate; every other request names its document.
        filters = [getattr(r, "_filter", None) for r in requests if not isinstance(r, InsertOne)]
        if not filters:
            return await self.raw.bulk_write(requests, **kwargs)
        async with _gate(self.raw).around(filters):
            return await self.raw.bulk_write(requests, **kwargs)


#: Statements per update command. FerretDB v1 holds a PostgreSQL connection for each statement of an
#: update command until the command ends: about fifty in one command exhaust its pool and hang it
#: (every client of the store with it, until FerretDB restarts).
UPDATES_PER_COMMAND = 16
DUPLICATE_KEY = 11000


async def update_in_commands(collection: Collection, updates: Sequence[UpdateOne | ReplaceOne]) -> int:
    """``updates`` (unordered) in commands of at most ``UPDATES_PER_COMMAND``, one at a time; how many
    matched. Not for upserts that may meet a duplicate key: FerretDB v1's answer to such a command
    lacks ``nModified`` and PyMongo fails on it with a ``KeyError`` (``update_one`` raises
    ``DuplicateKeyError`` as it should)."""
    matched = 0
    for start in range(0, len(updates), UPDATES_PER_COMMAND):
        result = await collection.bulk_write(list(updates[start:start + UPDATES_PER_COMMAND]), ordered=False)
        matched += result.matched_count
    return matched


async def find_each(collection: Collection, ids: Iterable[Any]) -> list[dict[str, Any]]:
    """The documents under ``ids``, one ``find_one`` each, concurrently: FerretDB v1 answers an
    ``_id`` ``$in`` by reading the whole collection."""
    docs = await asyncio.gather(*(collection.find_one({"_id": i}) for i in ids))
    return [d for d in docs if d is not None]


async def insert_once(collection: Collection, document: Mapping[str, Any]) -> bool:
    """Insert ``document`` keyed by its ``_id``; False when that ``_id`` was already there."""
    try:
        await collection.insert_one(dict(document))
    except DuplicateKeyError:
        return False
    return True


async def set_if_newer(collection: Collection, key: str, version_field: str, version: Any,
                       fields: Mapping[str, Any], known: Remembered[str, tuple[dict[str, Any], Any]], *,
                       on_insert: Mapping[str, Any] | None = None) -> bool:
    """Set ``fields`` and ``version_field`` on document ``key`` unless a version as new is stored:
    an older version read late changes nothing (the upsert meets the newer document and fails on
    the duplicate key). ``known`` holds what this process last wrote per key (it is the only
    writer), so that fields written already, or an older version, cost no write. True when written."""
    last = known.get(key)
    if last is not None and (last[0] == fields or version <= last[1]):
        return False
    update: dict[str, Any] = {"$set": {**fields, version_field: version}}
    if on_insert:
        update["$setOnInsert"] = dict(on_insert)
    try:
        await collection.update_one({"_id": key, version_field: {"$lt": version}}, update, upsert=True)
    except DuplicateKeyError:
        known.forget(key)  # a newer one is stored: read it when it matters
        return False
    known.put(key, (dict(fields), version))
    return True


async def upsert_once(
    collection: Collection, key: Mapping[str, Any], document: Mapping[str, Any]
) -> bool:
    """Write ``document`` under ``key`` only if nothing is there yet; True when it was written."""
    result = await collection.update_one(dict(key), {"$setOnInsert": dict(document)}, upsert=True)
    return result.upserted_id is not None


def index(collection: str, *keys: str | tuple[str, int], unique: bool = False, name: str | None = None) -> Index:
    """``index("ledger", "customer_id", ("time", -1), unique=True)``."""
    normalised = tuple(k if isinstance(k, tuple) else (k, ASCENDING) for k in keys)
    return Index(collection, normalised, unique=unique, name=name)
