"""``rotate-keys``: re-encrypt every complaint's sealed text under the active key while the service
serves (see ``shared.rotation``)."""

from __future__ import annotations

from shared import rotation

from .repository import INDEXES, Repository
from .settings import ComplaintsSettings


async def rotate_keys(repo: Repository, batch_size: int) -> dict[str, int]:
    return await rotation.rotate({"complaints": (repo.reseal_batch, repo.count_unrotated)}, batch_size)


async def run(settings: ComplaintsSettings) -> dict[str, int]:
    return await rotation.run(settings, INDEXES, Repository, rotate_keys)
