"""``rotate-keys``: re-encrypt every sealed value under the active key, and make every blind index
again with the active blind-index key, while the service serves.

Runs in batches; each document is rewritten only if it still carries an old key id, so the run is
idempotent and can be stopped and started again at any point. Readers keep working throughout
because the old keys stay in the settings until the run reports nothing left.
"""

from __future__ import annotations

import structlog

from shared.mongo import Store

from shared.pii import PiiCipher
from .repository import INDEXES, SEALED_COLLECTIONS, Repository
from .settings import CustomerSettings

log = structlog.get_logger(__name__)


async def rotate_keys(repo: Repository, batch_size: int) -> dict[str, int]:
    """Reseal every collection; how many documents each had rewritten."""
    rewritten: dict[str, int] = {}
    for collection in SEALED_COLLECTIONS:
        total = 0
        while True:
            found, done = await repo.reseal_batch(collection, batch_size)
            total += done
            if found == 0:
                break
            if done == 0:
                # Every one found was changed meanwhile by a writer, which seals with the active keys;
                # a document that stays behind shows in the count below, and the run can be repeated.
                log.warning("keys_rotation_stalled", collection=collection,
                            left=await repo.count_unrotated(collection))
                break
            log.info("keys_rotation_progress", collection=collection, rewritten=total)
        rewritten[collection] = total
    log.info("keys_rotated", active_key_id=repo.cipher.active_key_id, **rewritten)
    return rewritten


async def run(settings: CustomerSettings) -> dict[str, int]:
    store = Store.connect(settings, INDEXES)
    try:
        await store.ensure_indexes()
        return await rotate_keys(Repository(store, PiiCipher.from_settings(settings)), settings.rotation_batch_size)
    finally:
        await store.close()
