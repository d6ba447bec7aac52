"""The SLA scheduler: what time alone causes, with no new input.

The domain keeps ``next_check_at`` at the earliest pending warning, breach or auto-close, and the
repository files each complaint under the minute of that check (``due_slot``). A pass looks up, by
equality, every minute since the previous pass up to the current one and applies ``domain.tick``
with the runtime's clock to the complaints due by now, several at a time. The last minute finished
is stored, so a restarted scheduler resumes where the previous one stopped; one with nothing to
resume from (a new store, or one written before due slots existed), or stopped for longer than a
day, reads all complaints once instead.

It also republishes outboxes, and the unsent events of bulk writes, left behind by a crash between
a write and its publish.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import structlog

from . import domain
from .domain import Complaint
from .repository import due_slot, slot_of
from .workflow import Workflow

log = structlog.get_logger(__name__)
#: Minutes before the resumed one looked at again: a writer whose clock is a little behind ours
#: files a complaint under a minute we may just have finished.
LOOKBACK_SLOTS = 2
#: Beyond this many minutes to catch up, one read of all complaints is cheaper than a query per minute.
MAX_CATCH_UP_SLOTS = 24 * 60
#: Complaints ticked in one bulk write; a few chunks are under way at once (``concurrency``).
TICK_CHUNK = 200


class Scheduler:
    def __init__(self, workflow: Workflow, interval_s: float, concurrency: int = 16) -> None:
        self.workflow = workflow
        self.interval_s = interval_s
        self.concurrency = concurrency
        self._next_slot: int | None = None
        self._saved: int | None = None
        self._pending_last_pass: set[tuple[str, int]] = set()
        self._unsent_last_pass: set[str] = set()

    async def run(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval_s)

    async def run_once(self) -> int:
        """One pass; the number of complaints it found due."""
        workflow = self.workflow
        repo = workflow.repo
        now = workflow.now()
        current = slot_of(now)
        start = self._next_slot
        if start is None:
            done = await repo.progress()
            start = None if done is None else done + 1
        if start is None or current - start > MAX_CATCH_UP_SLOTS:
            handled = await self._catch_up(now)
        else:
            handled = 0
            for slot in range(min(start, current) - LOOKBACK_SLOTS, current + 1):
                found = await repo.due_in(slot)
                handled += await self._tick([(c, o) for c, o in found if _due(c, now)])
        # The current minute is looked at again by the next pass: what falls due later in it stays.
        self._next_slot = current
        if self._saved != current - 1:
            await repo.set_progress(current - 1)
            self._saved = current - 1
        # An outbox still unsent at the same revision a whole pass later was left by a crash.
        pending = set(await repo.pending())
        for complaint_id, _ in pending & self._pending_last_pass:
            log.info("outbox_republished", complaint_id=complaint_id)
            await workflow.flush(complaint_id)
        self._pending_last_pass = pending
        # The same for the events of a bulk write (see ``Workflow._held``).
        unsent = await repo.unsent_tokens()
        for token in unsent & self._unsent_last_pass:
            resent = await workflow.resend(token)
            log.info("bulk_write_events_republished", complaints=resent)
        self._unsent_last_pass = unsent
        return handled

    async def _catch_up(self, now: datetime) -> int:
        repo = self.workflow.repo
        due: list[tuple[Complaint, list[str]]] = []
        moved = 0
        for complaint, outbox, slot in await repo.with_checks():
            if _due(complaint, now):
                due.append((complaint, outbox))
            elif slot != (wanted := due_slot(complaint.next_check_at, now)):
                assert wanted is not None
                await repo.move_to_slot(complaint.complaint_id, complaint.revision, wanted)
                moved += 1
        handled = await self._tick(due)
        log.info("scheduler_caught_up", due=handled, refiled=moved)
        return handled

    async def _tick(self, due: list[tuple[Complaint, list[str]]]) -> int:
        """Tick the complaints from the documents just read, a chunk at a time in bulk (see
        ``Workflow.change_many``); a failure leaves the other chunks to finish and then fails the
        pass, whose minutes the next pass reads again."""
        workflow = self.workflow
        gate = asyncio.Semaphore(self.concurrency)

        async def chunk(part: list[tuple[Complaint, list[str]]]) -> None:
            async with gate:
                await workflow.change_many(part, lambda c, t: domain.tick(c, now=t, rules=workflow.rules))

        parts = [due[start:start + TICK_CHUNK] for start in range(0, len(due), TICK_CHUNK)]
        results = await asyncio.gather(*map(chunk, parts), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.warning("scheduler_ticks_failed", failed=len(failed), of=len(parts), error=type(failed[0]).__name__)
            raise failed[0]
        return len(due)


def _due(complaint: Complaint, now: datetime) -> bool:
    return complaint.next_check_at is not None and complaint.next_check_at <= now
