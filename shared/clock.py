"""The clock every time rule reads. Rules never call ``datetime.now()`` themselves.

``WallClock`` for production; ``EventTimeClock`` for replays (the newest event time seen, a
watermark, so that 2010 data is judged as of 2010); ``FixedClock`` for tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    def observe(self, event_time: datetime) -> None:
        """Tell the clock an event happened at ``event_time`` (ignored by wall clocks)."""
        ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def observe(self, event_time: datetime) -> None:
        pass


class FixedClock:
    """A clock that stands still until moved; for tests."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._now = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def observe(self, event_time: datetime) -> None:
        pass

    def set(self, at: datetime) -> None:
        self._now = at.astimezone(UTC)

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now


class EventTimeClock:
    """A watermark: the highest event time observed. Before any event, wall time."""

    def __init__(self, start: datetime | None = None) -> None:
        self._watermark = start.astimezone(UTC) if start else None

    def now(self) -> datetime:
        return self._watermark or datetime.now(UTC)

    @property
    def watermark(self) -> datetime | None:
        """The newest event time observed; None before the first."""
        return self._watermark

    def observe(self, event_time: datetime) -> None:
        t = event_time.astimezone(UTC)
        if self._watermark is None or t > self._watermark:
            self._watermark = t


def clock_for(kind: str) -> Clock:
    if kind == "wall":
        return WallClock()
    if kind == "event":
        return EventTimeClock()
    raise ValueError(f"unknown clock {kind!r}")
