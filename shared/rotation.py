"""``rotate-keys`` for every service that seals personal data: re-encrypt, while the service serves,
what an old key sealed, so that the old key can then leave the settings.

Runs in batches; each document is rewritten only if it still carries the old key id it was read
with, so a concurrent writer (which always seals with the active key) or an erasure wins, and the
run is idempotent: it can be stopped and started again at any point. Readers keep working
throughout because the old keys stay in the settings until a run reports nothing left.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import structlog

from .mongo import Collection, Index, Store
from .pii import PiiCipher, PiiSettings

log = structlog.get_logger(__name__)
R = TypeVar("R")

#: One batch of a collection's rotation: (documents found still under an old key, rewritten).
Batch = Callable[[int], Awaitable[tuple[int, int]]]
Count = Callable[[], Awaitable[int]]


def stale_fields(cipher: PiiCipher) -> dict[str, Any]:
    """Documents ``seal_fields`` wrote under a key other than the active one."""
    return {"pii_kid": {"$nin": [None, cipher.active_key_id]}}


def resealed(cipher: PiiCipher, collection: str, doc: Mapping[str, Any],
             items: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """The fields that put ``doc`` under the active key: its ``pii`` and the sealed text of each
    entry of its ``items`` lists, opened and sealed again as ``seal_fields`` and ``seal_items`` do."""
    plain = copy.deepcopy(dict(doc))  # opening works on the document in place
    names = tuple(plain.get("pii") or {})
    for field, name in items:
        cipher.open_items(plain, field, name, collection=collection)
        cipher.seal_items(plain, field, name, collection=collection)
    cipher.seal_fields(cipher.open_fields(plain, collection=collection), names, collection=collection)
    return {"pii": plain["pii"], "pii_kid": cipher.active_key_id,
            **{field: plain[field] for field, _ in items if plain.get(field)}}


async def reseal_batch(collection: Collection, cipher: PiiCipher, name: str, limit: int,
                       items: tuple[tuple[str, str], ...] = ()) -> tuple[int, int]:
    """Up to ``limit`` documents of ``collection`` (named ``name`` in the sealing contexts) put under
    the active key: (found, rewritten)."""
    docs = await collection.find(stale_fields(cipher)).limit(limit).to_list(None)
    done = 0
    for doc in docs:
        result = await collection.update_one({"_id": doc["_id"], "pii_kid": doc["pii_kid"]},
                                             {"$set": resealed(cipher, name, doc, items)})
        done += result.modified_count
    return len(docs), done


async def rotate(batches: Mapping[str, tuple[Batch, Count]], batch_size: int) -> dict[str, int]:
    """Run each collection's batches until none finds anything; how many documents each had
    rewritten. A batch that rewrites none of what it found (every one changed meanwhile by a writer,
    which seals with the active keys) ends that collection's run, with what is left logged: a
    document that stays behind shows there, and the run can be repeated."""
    rewritten: dict[str, int] = {}
    for name, (batch, count) in batches.items():
        total = 0
        while True:
            found, done = await batch(batch_size)
            total += done
            if found == 0:
                break
            if done == 0:
                log.warning("keys_rotation_stalled", collection=name, left=await count())
                break
            log.info("keys_rotation_progress", collection=name, rewritten=total)
        rewritten[name] = total
    log.info("keys_rotated", **rewritten)
    return rewritten


async def run(settings: PiiSettings, indexes: list[Index], repository: Callable[[Store, PiiCipher], R],
              rotate_keys: Callable[[R, int], Awaitable[dict[str, int]]]) -> dict[str, int]:
    """A service's whole rotation on its own connection: what ``rotate-keys`` runs."""
    store = Store.connect(settings, indexes)
    try:
        await store.ensure_indexes()
        return await rotate_keys(repository(store, PiiCipher.from_settings(settings)), settings.rotation_batch_size)
    finally:
        await store.close()
