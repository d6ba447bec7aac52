"""Clocks: wall time, a fixed clock for tests, and the event-time watermark for replays."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.clock import EventTimeClock, FixedClock, WallClock, clock_for


def test_the_event_time_clock_is_the_highest_event_time_seen() -> None:
    clock = EventTimeClock()
    clock.observe(datetime(2010, 12, 1, 8, 26, tzinfo=UTC))
    clock.observe(datetime(2010, 12, 5, 9, 0, tzinfo=timezone(timedelta(hours=8))))
    clock.observe(datetime(2010, 12, 2, tzinfo=UTC))  # late event: the watermark does not go back
    assert clock.now() == datetime(2010, 12, 5, 1, 0, tzinfo=UTC)


def test_the_event_time_clock_reads_wall_time_before_any_event() -> None:
    assert abs(EventTimeClock().now() - datetime.now(UTC)) < timedelta(seconds=5)


def test_a_fixed_clock_stands_still_until_moved() -> None:
    clock = FixedClock(datetime(2026, 2, 13, 9, tzinfo=UTC))
    clock.observe(datetime(2030, 1, 1, tzinfo=UTC))
    assert clock.now() == datetime(2026, 2, 13, 9, tzinfo=UTC)
    assert clock.advance(timedelta(hours=2)) == datetime(2026, 2, 13, 11, tzinfo=UTC)
    with pytest.raises(ValueError):
        FixedClock(datetime(2026, 1, 1))


def test_settings_choose_the_clock() -> None:
    assert isinstance(clock_for("wall"), WallClock)
    assert isinstance(clock_for("event"), EventTimeClock)
    with pytest.raises(ValueError):
        clock_for("sundial")
