"""A business calendar: working periods in a time zone, the country's public holidays and make-up
working days (from the ``holidays`` package), and company overrides. All results are in UTC."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

#: Longest span the arithmetic walks before giving up (a misconfigured calendar with no working day).
MAX_DAYS = 3 * 366
#: Days whose intervals are kept (a few years' worth: far more than the timers of open complaints span).
MAX_DAYS_KEPT = 4096


def parse_periods(text: str) -> tuple[tuple[time, time], ...]:
    """``"09:00-12:00,13:30-18:00"`` to ordered, non-overlapping periods."""
    periods = []
    for part in text.split(","):
        start, _, end = part.strip().partition("-")
        periods.append((time.fromisoformat(start.strip()), time.fromisoformat(end.strip())))
    periods.sort()
    for (a, b), (c, _) in zip(periods, periods[1:], strict=False):
        if b > c:
            raise ValueError(f"working periods overlap: {a}-{b} and {c}")
    if any(a >= b for a, b in periods):
        raise ValueError("a working period must end after it starts")
    return tuple(periods)


class BusinessCalendar:
    def __init__(
        self,
        timezone: str,
        periods: Sequence[tuple[time, time]],
        *,
        country: str | None = None,
        closed_days: Iterable[date] = (),
        working_days: Iterable[date] = (),
    ) -> None:
        if not periods:
            raise ValueError("a business calendar needs at least one working period")
        self.tz = ZoneInfo(timezone)
        self.periods = tuple(periods)
        self.closed_days = frozenset(closed_days)
        self.working_days = frozenset(working_days)
        # Without a country only weekends are days off.
        self._public = holidays.country_holidays(country) if country else None
        #: Each day's working intervals as worked out once: every SLA timer of every complaint walks
        #: the same few days, and working them out again was most of a scheduler tick's time.
        self._days: dict[date, tuple[tuple[datetime, datetime], ...]] = {}

    @functools.cached_property
    def day_length(self) -> timedelta:
        return sum((_span(a, b) for a, b in self.periods), timedelta())

    def is_working_day(self, day: date) -> bool:
        if day in self.closed_days:
            return False
        if day in self.working_days:
            return True
        if self._public is not None:
            # Knows substituted days: a make-up Saturday is a working day, a bridged Friday is not.
            return bool(self._public.is_working_day(day))
        return day.weekday() < 5

    def intervals(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The working intervals of a local calendar day, in UTC."""
        found = self._days.get(day)
        if found is None:
            if len(self._days) >= MAX_DAYS_KEPT:
                self._days.clear()
            found = self._days[day] = tuple(
                (datetime.combine(day, a, self.tz).astimezone(UTC), datetime.combine(day, b, self.tz).astimezone(UTC))
                for a, b in self.periods) if self.is_working_day(day) else ()
        return found

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment ``duration`` of working time after ``start``."""
        if duration <= timedelta():
            return start.astimezone(UTC)
        remaining = duration
        start = start.astimezone(UTC)
        day = start.astimezone(self.tz).date()
        for _ in range(MAX_DAYS):
            for a, b in self.intervals(day):
                a = max(a, start)
                if a >= b:
                    continue
                if remaining <= b - a:
                    return a + remaining
                remaining -= b - a
            day += timedelta(days=1)
        raise ValueError("no working time within three years; check the calendar")

    def add_working_days(self, start: datetime, days: float) -> datetime:
        return self.add(start, self.day_length * days)

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Working time from ``start`` to ``end`` (zero when ``end`` is not later)."""
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        total = timedelta()
        if end <= start:
            return total
        day = start.astimezone(self.tz).date()
        last = end.astimezone(self.tz).date()
        while day <= last:
            for a, b in self.intervals(day):
                overlap = min(b, end) - max(a, start)
                if overlap > timedelta():
                    total += overlap
            day += timedelta(days=1)
        return total


def _span(a: time, b: time) -> timedelta:
    return datetime.combine(date.min, b) - datetime.combine(date.min, a)
