"""The one factory of the complaints service."""

from __future__ import annotations

import structlog
from fastapi import FastAPI

from shared.clock import Clock
from shared.pii import PiiCipher
from shared.service import Runtime

from . import api, handlers, repository
from .scheduler import Scheduler
from .settings import ComplaintsSettings
from .workflow import Workflow

log = structlog.get_logger(__name__)
TITLE = "Complaints service"
DESCRIPTION = "Complaint intake, state machine, SLAs on a business calendar, escalation and satisfaction."


def build_app(settings: ComplaintsSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or ComplaintsSettings()
    directory = settings.staff()  # a staff file that cannot be used stops the service here
    if settings.staff_file is None and settings.environment != "development":
        log.warning("staff_directory_is_the_development_one", hint="set COMPLAINTS_STAFF_FILE")
    runtime = Runtime.create(settings, clock=clock, indexes=repository.INDEXES, description=DESCRIPTION)
    repo = repository.Repository(runtime.store, PiiCipher.from_settings(settings), runtime.clock)
    workflow = Workflow(repo, settings.rules(), runtime.clock, runtime.publisher, directory)
    runtime.include(handlers.build_router(settings, workflow, runtime.dead_letters))
    scheduler = Scheduler(workflow, settings.scheduler_interval_s, settings.scheduler_concurrency)
    runtime.add_task(scheduler.run)

    async def queue_keys() -> None:
        changed = await repo.backfill_queue_keys(directory.team_for)
        if changed:
            log.info("queue_keys_backfilled", complaints=changed)

    runtime.add_task(queue_keys)
    return runtime.http_app(title=TITLE, description=DESCRIPTION, routers=[api.router],
                            state={"repo": repo, "workflow": workflow, "scheduler": scheduler})
