"""The SLA scheduler: what time alone causes, with no new input.

Every pass reads the complaints whose next check is due (the domain keeps ``next_check_at`` at the
earliest pending warning, breach or auto-close) and applies ``domain.tick`` with the runtime's clock.
It also republishes outboxes left behind by a crash between a write and its publish.
"""

from __future__ import annotations

import asyncio

import structlog

from . import domain
from .workflow import Workflow

log = structlog.get_logger(__name__)


class Scheduler:
    def __init__(self, workflow: Workflow, interval_s: float) -> None:
        self.workflow = workflow
        self.interval_s = interval_s
        self._pending_last_pass: set[tuple[str, int]] = set()

    async def run(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval_s)

    async def run_once(self) -> int:
        workflow = self.workflow
        now = workflow.now()
        due = await workflow.repo.due(now)
        for complaint_id in due:
            await workflow.change(complaint_id, lambda c, t: domain.tick(c, now=t, rules=workflow.rules))
        # An outbox still unsent at the same revision a whole pass later was left by a crash.
        pending = set(await workflow.repo.pending())
        for complaint_id, _ in pending & self._pending_last_pass:
            log.info("outbox_republished", complaint_id=complaint_id)
            await workflow.flush(complaint_id)
        self._pending_last_pass = pending
        return len(due)
