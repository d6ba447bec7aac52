"""The one factory of the complaints service."""

from __future__ import annotations

import structlog
from fastapi import FastAPI

from shared.clock import Clock
from shared.pii import PiiCipher
from shared.service import Runtime

from . import accounts_api, accounts_repository, api, handlers, repository
from .accounts_workflow import AccountsWorkflow
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
    runtime = Runtime.create(settings, clock=clock, indexes=[*repository.INDEXES, *accounts_repository.INDEXES],
                             description=DESCRIPTION)
    cipher = PiiCipher.from_settings(settings)
    repo = repository.Repository(runtime.store, cipher, runtime.clock)
    account_repo = accounts_repository.AccountsRepository(runtime.store, cipher)
    rules = settings.rules()
    workflow = Workflow(repo, rules, runtime.clock, runtime.publisher, directory, account_repo.manager)
    account_workflow = AccountsWorkflow(account_repo, repo, directory, settings.account_rule, runtime.clock,
                                        runtime.publisher, rules.calendar, settings.return_visit_days)
    runtime.include(handlers.build_router(settings, workflow, runtime.dead_letters, account_workflow))
    scheduler = Scheduler(workflow, settings.scheduler_interval_s, settings.scheduler_concurrency)
    runtime.add_task(scheduler.run)

    async def queue_keys() -> None:
        changed = await repo.backfill_queue_keys(directory.team_for)
        if changed:
            log.info("queue_keys_backfilled", complaints=changed)

    async def account_outboxes() -> None:
        await account_workflow.run(settings.scheduler_interval_s)

    runtime.add_task(queue_keys)
    runtime.add_task(account_outboxes)
    return runtime.http_app(title=TITLE, description=DESCRIPTION, routers=[api.router, accounts_api.router],
                            state={"repo": repo, "workflow": workflow, "scheduler": scheduler,
                                   "accounts": account_workflow})
