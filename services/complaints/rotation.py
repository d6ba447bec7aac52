"""``rotate-keys``: re-encrypt every complaint's sealed text, and every return visit's outcome summary,
under the active key while the service serves (see ``shared.rotation``)."""

from __future__ import annotations

from shared import rotation

from .accounts_repository import INDEXES as ACCOUNT_INDEXES
from .accounts_repository import AccountsRepository
from .repository import INDEXES, Repository
from .settings import ComplaintsSettings


async def rotate_keys(repo: Repository, batch_size: int) -> dict[str, int]:
    tasks = AccountsRepository(repo.store, repo.cipher)
    return await rotation.rotate({"complaints": (repo.reseal_batch, repo.count_unrotated),
                                  "tasks": (tasks.reseal_batch, tasks.count_unrotated)}, batch_size)


async def run(settings: ComplaintsSettings) -> dict[str, int]:
    return await rotation.run(settings, [*INDEXES, *ACCOUNT_INDEXES], Repository, rotate_keys)
