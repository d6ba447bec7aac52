"""``rotate-keys``: re-encrypt the copies of customers' contacts and the staff alerts under the
active key, and file every suppressed address and number under the active blind-index key, while
the service serves (see ``shared.rotation``)."""

from __future__ import annotations

from shared.mongo import Store
from shared.pii import PiiCipher
from shared.rotation import rotate

from .repository import INDEXES, Repository
from .settings import NotificationsSettings

SEALED_COLLECTIONS = ("customers", "staff_alerts")


async def rotate_keys(repo: Repository, batch_size: int) -> dict[str, int]:
    batches = {name: (lambda n, name=name: repo.reseal_batch(name, n), lambda name=name: repo.count_unrotated(name))
               for name in SEALED_COLLECTIONS}
    batches["suppressions"] = (repo.refile_suppressions, repo.count_unfiled)
    return await rotate(batches, batch_size)


async def run(settings: NotificationsSettings) -> dict[str, int]:
    store = Store.connect(settings, INDEXES)
    try:
        await store.ensure_indexes()
        return await rotate_keys(Repository(store, PiiCipher.from_settings(settings)), settings.rotation_batch_size)
    finally:
        await store.close()
