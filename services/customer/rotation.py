"""``rotate-keys``: re-encrypt every sealed value under the active key, and make every blind index
again with the active blind-index key, while the service serves (see ``shared.rotation``)."""

from __future__ import annotations

from shared import rotation

from .repository import INDEXES, SEALED_COLLECTIONS, Repository
from .settings import CustomerSettings


async def rotate_keys(repo: Repository, batch_size: int) -> dict[str, int]:
    """Reseal every collection; how many documents each had rewritten."""
    return await rotation.rotate({name: (lambda n, name=name: repo.reseal_batch(name, n),
                                lambda name=name: repo.count_unrotated(name))
                         for name in SEALED_COLLECTIONS}, batch_size)


async def run(settings: CustomerSettings) -> dict[str, int]:
    return await rotation.run(settings, INDEXES, Repository, rotate_keys)
