"""Time-driven messages: birthdays, holidays and follow-ups once a day per time zone (a return visit,
published for the account manager, instead of the follow-up of a customer who has one), and deferred sends.

Every tick, each time zone whose local clock has passed the daily send hour and whose run for that
local date is not recorded yet is fanned out: its customers are read a batch at a time (memory stays
bounded by the batch size) and each batch goes to the workflow. The run is recorded at the end; a
run cut short is simply done again, and the dedupe keys make the repeat send nothing twice.

Deferred messages are found by the minute they are due (``due_slot``): each pass looks up the slots
since the last one, a few minutes back, since a record may be written just after its slot was read.
At start one pass reads every deferred record instead, so a restart loses none (and records deferred
by an earlier version get their slot). Claiming a deferred record is conditional, so a slot read
twice, or by two workers, sends nothing twice.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from . import domain, satisfaction
from .calendar import holidays_on
from .workflow import Workflow
from .repository import Repository, due_slot
from .settings import NotificationsSettings

log = structlog.get_logger(__name__)
#: How far back each pass looks again for deferred records written after their slot was read.
OVERLAP = timedelta(minutes=5)
#: Slots looked up at once when a pass has many (the clock moved on while the service was busy).
SLOT_LOOKUPS = 32


class Scheduler:
    def __init__(self, settings: NotificationsSettings, repo: Repository, workflow: Workflow) -> None:
        self.settings = settings
        self.repo = repo
        self.workflow = workflow
        #: The first minute slot the next pass looks up; None until the start pass has run.
        self._next: datetime | None = None
        self.primed = asyncio.Event()
        #: Set once the first pass after the start pass is done.
        self.ticked = asyncio.Event()

    async def run_forever(self) -> None:
        await self.prime()
        while True:
            await self.tick()
            self.ticked.set()
            await asyncio.sleep(self.settings.scheduler_interval_s)

    async def prime(self) -> None:
        """The start pass: the one read of every deferred record (and of the customers' time zones,
        in a store that has customers but no list of their zones yet)."""
        now = self.workflow.clock.now()
        if not await self.repo.has_timezones():
            await self.repo.rebuild_timezones()
        async for batch in self.repo.all_deferred(self.settings.fan_out_batch):
            await self.repo.set_due_slots(d for d in batch if "due_slot" not in d)
            await self.workflow.resume([d for d in batch if d["due_at"] <= now])
        deferred = await self.repo.deferred_staff_alerts()
        await self.workflow.resume_staff_alerts([d for d in deferred if d["due_at"] <= now])
        self._next = min(self._next or now, now - OVERLAP)
        self.primed.set()

    async def tick(self) -> None:
        now = self.workflow.clock.now()
        await self.resume_due(now)
        for timezone in await self.repo.timezones():
            local = now.astimezone(ZoneInfo(timezone))
            if local.hour < self.settings.daily_send_hour:
                continue
            run_id = f"daily:{timezone}:{local.date().isoformat()}"
            if await self.repo.run_done(run_id):
                continue
            count = await self.fan_out(timezone, local, run_id)
            await self.repo.mark_run(run_id, now, count)
            log.info("daily_run_done", timezone=timezone, day=local.date().isoformat(), requests=count)

    async def resume_due(self, now: datetime) -> None:
        """Send the deferred messages due by ``now``, looked up by the minutes since the last pass."""
        start = (self._next or now - OVERLAP).replace(second=0, microsecond=0)
        slots = [due_slot(start + timedelta(minutes=m)) for m in range(int((now - start).total_seconds() // 60) + 1)]
        for i in range(0, len(slots), SLOT_LOOKUPS):
            await asyncio.gather(*(self._resume_slot(slot, now) for slot in slots[i:i + SLOT_LOOKUPS]))
        self._next = max(self._next or start, now - OVERLAP)

    async def _resume_slot(self, slot: str, now: datetime) -> None:
        async for batch in self.repo.due_in(slot, now, self.settings.fan_out_batch):
            await self.workflow.resume(batch)
        await self.workflow.resume_staff_alerts(await self.repo.staff_alerts_due_in(slot, now))

    async def fan_out(self, timezone: str, local: datetime, run_id: str) -> int:
        """Hand each batch to the workflow; a few batches are in flight at once, so reading and
        deciding the next overlaps with mailing the last, while memory stays bounded."""
        day = local.date()
        count = 0
        in_flight: set[asyncio.Task[None]] = set()
        async for batch in self.repo.customers_in(timezone, self.settings.fan_out_batch):
            requests = []
            visits = []
            for profile in batch:
                country = profile.country or self.settings.default_country
                today = holidays_on(day, country, selection=self.settings.holiday_selection,
                                    extra=self.settings.extra_holidays)
                requests += domain.daily_requests(profile, day, today, cadence=self.settings.follow_up_days,
                                                  country=country, run_id=run_id)
                requests += satisfaction.periodic_requests(profile, day, every=self.settings.survey_every_days,
                                                           run_id=run_id)
                visit = domain.return_visit(profile, day, cadence=self.settings.follow_up_days, now=local)
                if visit is not None:
                    visits.append(visit)
            if visits:  # the account managers' return visits, for the complaints service's work queues
                await self.workflow.publisher.publish(visits)
            count += len(requests) + len(visits)
            if len(in_flight) >= self.settings.fan_out_parallel_batches:
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            known = {p.customer_id: p for p in batch}
            in_flight.add(asyncio.create_task(self.workflow.submit(requests, known=known)))
        for task in asyncio.as_completed(in_flight):
            await task
        return count
