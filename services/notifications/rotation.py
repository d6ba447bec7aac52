"""``rotate-keys``: re-encrypt the copies of customers' contacts and the staff alerts under the
active key, and file every suppressed address and number under the active blind-index key, while
the service serves (see ``shared.rotation``)."""

from __future__ import annotations

from shared import rotation

from .repository import INDEXES, Repository
from .settings import NotificationsSettings

SEALED_COLLECTIONS = ("customers", "staff_alerts")


async def rotate_keys(repo: Repository, batch_size: int) -> dict[str, int]:
    batches = {name: (lambda n, name=name: repo.reseal_batch(name, n), lambda name=name: repo.count_unrotated(name))
               for name in SEALED_COLLECTIONS}
    batches["suppressions"] = (repo.suppression_list.refile, repo.suppression_list.count_unfiled)
    return await rotation.rotate(batches, batch_size)


async def run(settings: NotificationsSettings) -> dict[str, int]:
    return await rotation.run(settings, INDEXES, Repository, rotate_keys)
