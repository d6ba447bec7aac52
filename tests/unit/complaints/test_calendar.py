"""Business calendar arithmetic on fixed cases.

The China 2026 dates below are those of the ``holidays`` package: Spring Festival days off
2026-02-16 to 2026-02-20 and 2026-02-23, with Saturday 2026-02-14 and Saturday 2026-02-28 as
make-up working days; National Day days off 2026-10-01 to 2026-10-03 and 2026-10-05 to 2026-10-07,
with Sunday 2026-09-20 and Saturday 2026-10-10 as make-up working days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest

from services.complaints.calendar import BusinessCalendar, parse_periods

SHANGHAI = ZoneInfo("Asia/Shanghai")
PERIODS = parse_periods("09:00-12:00,13:30-18:00")


def cn() -> BusinessCalendar:
    return BusinessCalendar("Asia/Shanghai", PERIODS, country="CN")


def local(y: int, m: int, d: int, hh: int = 0, mm: int = 0, tz: ZoneInfo = SHANGHAI) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=tz)


def test_the_holidays_package_agrees_with_the_dates_these_tests_rely_on() -> None:
    data = holidays.country_holidays("CN", years=2026)
    assert {date(2026, 2, d) for d in (16, 17, 18, 19, 20, 23)} <= set(data)
    assert {date(2026, 10, d) for d in (1, 2, 3, 5, 6, 7)} <= set(data)
    assert {date(2026, 2, 14), date(2026, 2, 28), date(2026, 9, 20), date(2026, 10, 10)} <= data.weekend_workdays


def test_the_make_up_saturday_before_spring_festival_is_a_working_day() -> None:
    calendar = cn()
    assert calendar.is_working_day(date(2026, 2, 14))
    assert not calendar.is_working_day(date(2026, 2, 15))  # an ordinary Sunday
    assert not calendar.is_working_day(date(2026, 2, 20))  # a bridged Friday


def test_three_working_days_from_friday_13_february_cross_spring_festival_and_count_the_make_up_saturday() -> None:
    # Working days after Fri 13 Feb: Sat 14 (make-up), then Tue 24 and Wed 25 after the festival.
    due = cn().add_working_days(local(2026, 2, 13, 10), 3)
    assert due == local(2026, 2, 25, 10).astimezone(UTC)


def test_three_working_days_after_30_september_cross_national_day_to_the_make_up_saturday() -> None:
    # Thu 8 and Fri 9 October, then the make-up Saturday 10 October.
    due = cn().add_working_days(local(2026, 9, 30, 18), 3)
    assert due == local(2026, 10, 10, 18).astimezone(UTC)


def test_the_lunch_break_does_not_count_as_working_time() -> None:
    calendar = cn()
    # 11:00 plus two working hours: one before lunch, one after 13:30.
    assert calendar.add(local(2026, 3, 2, 11), timedelta(hours=2)) == local(2026, 3, 2, 14, 30).astimezone(UTC)
    assert calendar.between(local(2026, 3, 2, 11), local(2026, 3, 2, 14, 30)) == timedelta(hours=2)


def test_time_outside_working_periods_starts_at_the_next_period() -> None:
    calendar = cn()
    # Friday evening: the clock starts on Monday morning.
    assert calendar.add(local(2026, 3, 6, 20), timedelta(minutes=30)) == local(2026, 3, 9, 9, 30).astimezone(UTC)
    # At lunch: the clock starts at 13:30.
    assert calendar.add(local(2026, 3, 2, 12, 15), timedelta(hours=1)) == local(2026, 3, 2, 14, 30).astimezone(UTC)


def test_a_start_given_in_another_time_zone_is_read_in_the_calendars_zone() -> None:
    calendar = cn()
    # 02:00 UTC is 10:00 in Shanghai; 8 working hours end at 10:30 the next working day.
    start = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    assert calendar.add(start, timedelta(hours=8)) == local(2026, 3, 3, 10, 30).astimezone(UTC)
    # New York's working day is its own: 17:00 there is 06:00 next day in Shanghai, before opening.
    new_york = BusinessCalendar("America/New_York", PERIODS, country="US")
    due = new_york.add(local(2026, 3, 2, 17, tz=ZoneInfo("America/New_York")), timedelta(hours=2))
    assert due == local(2026, 3, 3, 10, 0, tz=ZoneInfo("America/New_York")).astimezone(UTC)


def test_a_day_length_is_the_sum_of_its_working_periods() -> None:
    assert cn().day_length == timedelta(hours=7, minutes=30)


def test_company_overrides_close_a_working_day_and_open_a_day_off() -> None:
    calendar = BusinessCalendar("Asia/Shanghai", PERIODS, country="CN", closed_days=[date(2026, 3, 2)],
                                working_days=[date(2026, 3, 7)])
    assert not calendar.is_working_day(date(2026, 3, 2))
    assert calendar.is_working_day(date(2026, 3, 7))
    # Fri 6 March 17:00 plus two working hours: one on Friday, one on the opened Saturday.
    assert calendar.add(local(2026, 3, 6, 17), timedelta(hours=2)) == local(2026, 3, 7, 10).astimezone(UTC)


def test_without_a_country_only_weekends_are_days_off() -> None:
    calendar = BusinessCalendar("Asia/Shanghai", PERIODS)
    assert calendar.is_working_day(date(2026, 10, 1))
    assert not calendar.is_working_day(date(2026, 10, 4))


@pytest.mark.parametrize("text", ["09:00-12:00,11:00-18:00", "12:00-09:00", "9-5"])
def test_overlapping_backwards_or_malformed_periods_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_periods(text)


def test_working_time_between_spans_a_holiday_without_counting_it() -> None:
    calendar = cn()
    # Fri 13 Feb 18:00 to Tue 24 Feb 09:00: only the make-up Saturday counts.
    assert calendar.between(local(2026, 2, 13, 18), local(2026, 2, 24, 9)) == timedelta(hours=7, minutes=30)


def test_days_worked_out_once_give_the_same_answers_after_the_kept_days_are_dropped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from services.complaints import calendar

    starts = [local(2026, 2, 10, 8) + timedelta(hours=7 * i) for i in range(60)]  # across Spring Festival
    fresh = [cn().add_working_days(start, 3) for start in starts]
    monkeypatch.setattr(calendar, "MAX_DAYS_KEPT", 5)
    kept = cn()
    assert [kept.add_working_days(start, 3) for start in starts] == fresh
    assert [kept.add_working_days(start, 3) for start in starts] == fresh
    assert 0 < len(kept._days) <= 5
    assert kept.intervals(date(2026, 2, 16)) == ()  # a Spring Festival day off
    assert kept.intervals(date(2026, 2, 14))[0][0] == local(2026, 2, 14, 9).astimezone(UTC)  # make-up Saturday
