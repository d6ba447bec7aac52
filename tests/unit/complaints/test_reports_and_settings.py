"""The report's arithmetic, the policy targets and the service's settings."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.complaints import domain
from services.complaints.calendar import BusinessCalendar, parse_periods
from services.complaints.policy import DEFAULT_POLICIES, SlaPolicy, Target
from services.complaints.reports import complaint_report, median, percentile
from services.complaints.settings import ComplaintsSettings

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
CALENDAR = BusinessCalendar("Asia/Shanghai", parse_periods("09:00-12:00,13:30-18:00"), country="CN")
RULES = domain.Rules(calendar=CALENDAR, policies=DEFAULT_POLICIES, policy_version="t")


def test_median_and_nearest_rank_p90() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([1.0, 2.0, 3.0, 4.0]) == 2.5
    assert percentile(list(map(float, range(1, 11))), 0.9) == 9.0
    assert percentile([5.0], 0.9) == 5.0
    assert median([]) is None and percentile([], 0.9) is None


def _complaint(n: int, *, channel: str, category: str, respond_h: float | None, resolve_h: float | None,
               score: int | None = None, reopen: bool = False) -> domain.Complaint:
    c, _ = domain.open_complaint(complaint_id=f"K{n}", customer_id="C", tier=None, opened_at=MONDAY, rules=RULES,
                                 fields={"channel": channel, "category": category, "severity": "normal",
                                         "complexity": "standard", "subject": "s"})
    if respond_h is not None:
        c, _ = domain.transition(c, "acknowledged", now=MONDAY + timedelta(hours=respond_h), rules=RULES, actor="a")
        c, _ = domain.transition(c, "investigating", now=MONDAY + timedelta(hours=respond_h), rules=RULES, actor="a")
    if resolve_h is not None:
        c, _ = domain.transition(c, "resolved", now=MONDAY + timedelta(hours=resolve_h), rules=RULES, actor="a",
                                 resolution_summary="r", root_cause="other")
    if score is not None:
        c, _ = domain.record_feedback(c, score, "", now=MONDAY + timedelta(hours=resolve_h or 0), rules=RULES,
                                      source=f"s{n}")
    if reopen:
        c, _ = domain.reopen(c, now=MONDAY + timedelta(days=1), rules=RULES, reason="r")
    return c


def test_the_report_figures_come_from_the_complaints_of_the_window() -> None:
    complaints = [
        _complaint(1, channel="phone", category="billing", respond_h=1, resolve_h=2, score=5),
        _complaint(2, channel="phone", category="delivery", respond_h=30, resolve_h=100, score=2),
        _complaint(3, channel="app", category="delivery", respond_h=None, resolve_h=None),
        _complaint(4, channel="app", category="delivery", respond_h=2, resolve_h=4, reopen=True),
    ]
    report = complaint_report(complaints, MONDAY, MONDAY + timedelta(days=30))
    assert report["total"] == 4
    assert report["by_channel"] == {"phone": 2, "app": 2}
    assert report["by_category"] == {"billing": 1, "delivery": 3}
    assert report["first_response"] == {"count": 3, "median_hours": 2.0, "p90_hours": 30.0}
    assert report["resolution"] == {"count": 3, "median_hours": 4.0, "p90_hours": 100.0}
    # Late first response of K2, and its resolution 100 h later is past 3 working days.
    assert report["sla_attainment"]["first_response"] == {"settled": 3, "met": 2, "rate": 0.6667}
    assert report["sla_attainment"]["resolution"] == {"settled": 3, "met": 2, "rate": 0.6667}
    assert report["csat"] == {"responses": 2, "average": 3.5, "satisfied_rate": 0.5}
    # K2's score of 2 reopened it, K4 was reopened by request: two of three resolved.
    assert report["reopen_rate"] == 0.6667


def _held(c: domain.Complaint, assignee: str | None, team: str | None) -> domain.Complaint:
    """``c`` as held by ``assignee`` of ``team`` (set directly: a closed one cannot be assigned)."""
    return c.model_copy(update={"team": team, "assignee": assignee})


def test_the_report_gives_each_person_and_team_their_own_figures() -> None:
    complaints = [
        _held(_complaint(1, channel="phone", category="billing", respond_h=1, resolve_h=2, score=5), "ann", "care"),
        _held(_complaint(2, channel="phone", category="delivery", respond_h=30, resolve_h=100, score=2),
              "ann", "care"),
        _held(_complaint(3, channel="app", category="delivery", respond_h=2, resolve_h=4, score=4), "bob", "care"),
        _held(_complaint(4, channel="app", category="delivery", respond_h=None, resolve_h=None), None, "vip"),
    ]
    report = complaint_report(complaints, MONDAY, MONDAY + timedelta(days=30))
    ann, bob = report["by_assignee"]["ann"], report["by_assignee"]["bob"]
    # Ann: responses after 1 h and 30 h (the second late), resolutions after 2 h and 100 h (the
    # second past 3 working days), scores 5 and 2 (the 2 reopened it).
    assert ann["total"] == 2 and ann["first_response"] == {"count": 2, "median_hours": 15.5, "p90_hours": 30.0}
    assert ann["resolution"] == {"count": 2, "median_hours": 51.0, "p90_hours": 100.0}
    assert ann["sla_attainment"]["first_response"] == {"settled": 2, "met": 1, "rate": 0.5}
    assert ann["csat"] == {"responses": 2, "average": 3.5, "satisfied_rate": 0.5}
    assert ann["reopen_rate"] == 0.5
    assert bob["sla_attainment"]["resolution"] == {"settled": 1, "met": 1, "rate": 1.0}
    assert bob["csat"]["satisfied_rate"] == 1.0 and bob["reopen_rate"] == 0.0
    assert report["by_assignee"]["unassigned"]["total"] == 1
    assert {team: f["total"] for team, f in report["by_team"].items()} == {"care": 3, "vip": 1}
    assert report["by_team"]["care"]["csat"] == {"responses": 3, "average": 3.667, "satisfied_rate": 0.6667}


def test_general_satisfaction_is_reported_in_all_and_by_tier_apart_from_the_complaints_csat() -> None:
    complaint = _held(_complaint(1, channel="phone", category="billing", respond_h=1, resolve_h=2, score=5), "ann",
                      "care")
    report = complaint_report([complaint], MONDAY, MONDAY + timedelta(days=30),
                              [("vip", 5), ("vip", 4), ("high", 2), (None, 3)])
    assert report["general_satisfaction"] == {
        "responses": 4, "average": 3.5, "satisfied_rate": 0.5,
        "by_tier": {"high": {"responses": 1, "average": 2.0, "satisfied_rate": 0.0},
                    "none": {"responses": 1, "average": 3.0, "satisfied_rate": 0.0},
                    "vip": {"responses": 2, "average": 4.5, "satisfied_rate": 1.0}}}
    assert report["csat"] == {"responses": 1, "average": 5.0, "satisfied_rate": 1.0}
    assert complaint_report([], MONDAY, MONDAY + timedelta(days=1))["general_satisfaction"] == {
        "responses": 0, "average": None, "satisfied_rate": None, "by_tier": {}}


@pytest.mark.parametrize(("text", "length"), [("24h", timedelta(hours=24)), ("8wh", timedelta(hours=8)),
                                              ("2wd", timedelta(hours=15)), ("0.5wd", timedelta(hours=3, minutes=45))])
def test_targets_read_clock_hours_working_hours_and_working_days(text: str, length: timedelta) -> None:
    assert Target(text).length(CALENDAR) == length


def test_clock_hour_targets_run_through_nights_and_holidays_but_working_targets_do_not() -> None:
    friday_evening = datetime(2026, 2, 13, 17, 0, tzinfo=SHANGHAI)
    assert Target("24h").advance(CALENDAR, friday_evening, timedelta(hours=24)) == friday_evening + timedelta(days=1)
    # 2 working hours from Friday 17:00: one on Friday, one on the make-up Saturday morning.
    assert Target("2wh").advance(CALENDAR, friday_evening, timedelta(hours=2)) == datetime(
        2026, 2, 14, 10, 0, tzinfo=SHANGHAI)


def test_a_policy_with_a_malformed_target_is_refused() -> None:
    with pytest.raises(ValidationError, match="working days"):
        SlaPolicy(name="x", targets={"resolution": "3 days"})


def test_settings_refuse_a_policy_list_without_a_catch_all_at_the_end() -> None:
    with pytest.raises(ValidationError, match="last SLA policy"):
        ComplaintsSettings(sla_policies=[{"name": "vip", "tiers": ["vip"], "targets": {"resolution": "1wd"}}])


def test_settings_build_the_calendar_and_rules_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPLAINTS_WORKING_PERIODS", "08:00-12:00")
    monkeypatch.setenv("COMPLAINTS_CLOSED_DAYS", '["2026-03-02"]')
    monkeypatch.setenv("COMPLAINTS_VERIFICATION", "true")
    monkeypatch.setenv("COMPLAINTS_LOW_SCORE_ACTION", "escalate")
    settings = ComplaintsSettings()
    rules = settings.rules()
    assert rules.calendar.day_length == timedelta(hours=4)
    assert not rules.calendar.is_working_day(date(2026, 3, 2))
    assert rules.verification and rules.low_score_action == "escalate"


def test_settings_refuse_overlapping_working_periods() -> None:
    with pytest.raises(ValidationError, match="overlap"):
        ComplaintsSettings(working_periods="09:00-13:00,12:00-18:00")
