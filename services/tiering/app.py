"""The one factory of the tiering service."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import FastAPI

from shared.clock import Clock
from shared.kafka import TRANSIENT_ERRORS
from shared.service import Runtime

from . import api, handlers, repository
from .workflow import Workflow
from .settings import TieringSettings

log = structlog.get_logger(__name__)
TITLE = "Tiering service"
DESCRIPTION = "Keeps per-customer metrics and classifies every customer under a versioned policy."


def build_app(settings: TieringSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or TieringSettings()
    runtime = Runtime.create(settings, clock=clock, indexes=repository.INDEXES, description=DESCRIPTION)
    repo = repository.Repository(runtime.store)
    workflow = Workflow(settings, repo, runtime.clock, runtime.registry, runtime.publisher)
    runtime.include(handlers.build_router(settings, workflow, runtime.dead_letters))

    async def scheduler() -> None:
        """Churn risk, downgrades after grace and lifecycle moves happen with no new event."""
        while True:
            while await workflow.run_due(settings.scheduler_batch) >= settings.scheduler_batch:
                pass  # more are due: keep going before sleeping
            await workflow.collect_garbage()
            await asyncio.sleep(settings.scheduler_interval_s)

    async def population_refresher() -> None:
        """Cut-offs once the state is loaded, then periodically (batches refresh them as soon as
        the population they bring moved materially)."""
        await workflow.refresh()
        while True:
            await asyncio.sleep(settings.refresh_interval_s)
            await workflow.refresh()

    async def flusher() -> None:
        """Writes what the batches evaluated and commits their offsets; at shutdown once more."""
        while True:
            await workflow.flush_due(settings.flush_interval_s)
            try:
                await workflow.flush()
            except TRANSIENT_ERRORS as exc:  # the store away: state and offsets wait for the next try
                log.warning("state_write_failed_will_retry", error=type(exc).__name__, detail=str(exc)[:300],
                            retry_in_s=settings.flush_interval_s)

    runtime.add_task(scheduler)
    runtime.add_task(flusher)
    runtime.on_stop(workflow.flush)
    if settings.refresh_interval_s > 0:
        runtime.add_task(population_refresher)
    return runtime.http_app(title=TITLE, description=DESCRIPTION, routers=[api.router],
                            state={"repo": repo, "workflow": workflow})
