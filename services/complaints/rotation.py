"""``rotate-keys``: re-encrypt every complaint's sealed text under the active key while the service
serves (see ``shared.rotation``)."""

from __future__ import annotations

from shared.mongo import Store
from shared.pii import PiiCipher
from shared.rotation import rotate

from .repository import INDEXES, Repository
from .settings import ComplaintsSettings


async def rotate_keys(repo: Repository, batch_size: int) -> dict[str, int]:
    return await rotate({"complaints": (repo.reseal_batch, repo.count_unrotated)}, batch_size)


async def run(settings: ComplaintsSettings) -> dict[str, int]:
    store = Store.connect(settings, INDEXES)
    try:
        await store.ensure_indexes()
        return await rotate_keys(Repository(store, PiiCipher.from_settings(settings)), settings.rotation_batch_size)
    finally:
        await store.close()
