"""Time-driven messages: birthdays, holidays and follow-ups once a day per time zone, and deferred sends.

Every tick, each time zone whose local clock has passed the daily send hour and whose run for that
local date is not recorded yet is fanned out: its customers are read a batch at a time (memory stays
bounded by the batch size) and each batch goes to the notifier. The run is recorded at the end; a
run cut short is simply done again, and the dedupe keys make the repeat send nothing twice.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog

from . import domain
from .calendar import holidays_on
from .notifier import Notifier
from .repository import Repository
from .settings import NotificationsSettings

log = structlog.get_logger(__name__)


class Scheduler:
    def __init__(self, settings: NotificationsSettings, repo: Repository, notifier: Notifier) -> None:
        self.settings = settings
        self.repo = repo
        self.notifier = notifier

    async def run_forever(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.settings.scheduler_interval_s)

    async def tick(self) -> None:
        now = self.notifier.clock.now()
        while await self.notifier.resume_due(self.settings.fan_out_batch) == self.settings.fan_out_batch:
            pass
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

    async def fan_out(self, timezone: str, local: datetime, run_id: str) -> int:
        """Hand each batch to the notifier; a few batches are in flight at once, so reading and
        deciding the next overlaps with mailing the last, while memory stays bounded."""
        day = local.date()
        count = 0
        recent = await self.repo.care_counts_since(self.notifier.clock.now() - self.notifier.policy.window)
        in_flight: set[asyncio.Task[None]] = set()
        async for batch in self.repo.customers_in(timezone, self.settings.fan_out_batch):
            requests = []
            for profile in batch:
                country = profile.country or self.settings.default_country
                today = holidays_on(day, country, selection=self.settings.holiday_selection,
                                    extra=self.settings.extra_holidays)
                requests += domain.daily_requests(profile, day, today, cadence=self.settings.follow_up_days,
                                                  country=country, run_id=run_id)
            count += len(requests)
            if len(in_flight) >= self.settings.fan_out_parallel_batches:
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            known = {p.customer_id: p for p in batch}
            in_flight.add(asyncio.create_task(self.notifier.submit(requests, known=known, recent_care=recent)))
        for task in asyncio.as_completed(in_flight):
            await task
        return count
