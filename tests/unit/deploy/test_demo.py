"""The pure parts of the demo: the care team's plan, the contacts it records, and the report's aggregations."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from deploy.demo import (
    AgentAction,
    agent_plan,
    complaint_event_counts,
    complaint_plan,
    contact,
    lifecycle_by_month,
    lifecycle_changes,
    months,
    report_html,
    stacked_columns_svg,
    synthetic_events,
    tier_change_counts,
    timeline,
)
from deploy.replay import Row
from shared.contract.events import ComplaintSubmitted, ComplaintSubmittedData

T0 = datetime(2011, 3, 1, 10, 0, tzinfo=UTC)


def _complaint(n: int, *, complexity: str = "standard", at: datetime = T0) -> ComplaintSubmitted:
    return ComplaintSubmitted(
        id=f"00000000-0000-4000-8000-{n:012d}", source="test", subject=f"C{n % 97}", time=at,
        data=ComplaintSubmittedData(complaint_id=f"CP-{n}", channel="email", category="delivery", severity="normal",
                                    complexity=complexity, subject="late", description=""),
    )


COMPLAINTS = [_complaint(n, complexity="complex" if n % 4 == 0 else "standard", at=T0 + timedelta(hours=n))
              for n in range(600)]


# --- the plan -----------------------------------------------------------------------------------------

def test_the_plan_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    assert agent_plan(COMPLAINTS, 7) == agent_plan(COMPLAINTS, 7)
    assert agent_plan(COMPLAINTS, 7) != agent_plan(COMPLAINTS, 8)


def test_a_complaint_is_handled_alike_whatever_else_is_replayed() -> None:
    alone = complaint_plan(COMPLAINTS[42], 7)
    among = [a for a in agent_plan(COMPLAINTS, 7) if a.complaint_id == "CP-42"]
    assert alone == among


def test_the_plan_is_in_time_order_and_steps_of_a_complaint_follow_its_opening() -> None:
    plan = agent_plan(COMPLAINTS, 7)
    assert [a.at for a in plan] == sorted(a.at for a in plan)
    opened = {c.data.complaint_id: c.time for c in COMPLAINTS}
    assert all(a.at > opened[a.complaint_id] for a in plan)


def test_each_complaint_is_acknowledged_before_it_is_resolved_and_surveyed_after() -> None:
    for complaint in COMPLAINTS:
        kinds = [a.kind for a in complaint_plan(complaint, 7)]
        if not kinds:
            continue
        assert kinds[0] == "acknowledge"
        assert kinds.count("acknowledge") == 1
        if "survey" in kinds:
            assert "resolve" in kinds[:kinds.index("survey")]
        steps = complaint_plan(complaint, 7)
        assert [a.step for a in steps] == list(range(len(steps)))
        assert [a.at for a in steps] == sorted(a.at for a in steps)


def test_a_seeded_share_is_left_unhandled_and_some_are_handled_late() -> None:
    plans = {c.data.complaint_id: complaint_plan(c, 7) for c in COMPLAINTS}
    unhandled = sum(1 for p in plans.values() if not p)
    assert 0.03 * len(plans) < unhandled < 0.15 * len(plans)
    opened = {c.data.complaint_id: c.time for c in COMPLAINTS}
    delays = [(p[0].at - opened[cid]) / timedelta(hours=1) for cid, p in plans.items() if p]
    # Some within the tightest first-response target (2 h), some beyond the loosest (24 h).
    assert sum(d <= 2 for d in delays) > 0.3 * len(delays)
    assert 0.03 * len(delays) < sum(d > 24 for d in delays) < 0.25 * len(delays)


def test_only_complex_complaints_get_progress_updates() -> None:
    plan = agent_plan(COMPLAINTS, 7)
    complex_ids = {c.data.complaint_id for c in COMPLAINTS if c.data.complexity == "complex"}
    updated = {a.complaint_id for a in plan if a.kind == "update"}
    assert updated and updated <= complex_ids


def test_a_low_survey_score_is_followed_by_a_second_resolution() -> None:
    plan = agent_plan(COMPLAINTS, 7)
    surveys = [a for a in plan if a.kind == "survey"]
    assert {a.score for a in surveys} == {1, 2, 3, 4, 5}
    for survey in surveys:
        later = [a for a in plan if a.complaint_id == survey.complaint_id and a.step > survey.step]
        assert [a.kind for a in later] == (["resolve"] if survey.score <= 2 else [])


def test_steps_after_the_end_of_the_replay_are_left_out() -> None:
    end = T0 + timedelta(days=3)
    assert all(a.at <= end for a in agent_plan(COMPLAINTS, 7, until=end))
    assert len(agent_plan(COMPLAINTS, 7, until=end)) < len(agent_plan(COMPLAINTS, 7))


def test_the_contact_of_a_step_names_its_complaint_and_is_the_same_on_a_second_run() -> None:
    step = AgentAction(T0, "acknowledge", "CP-1", "C1", "care.ana", 0)
    event = contact(step)
    assert (event.subject, event.time, event.data.kind, event.data.complaint_id) == ("C1", T0, "call", "CP-1")
    assert event.data.satisfaction is None
    assert contact(step).id == event.id
    survey = contact(AgentAction(T0, "survey", "CP-1", "C1", "care.ana", 2, score=4))
    assert (survey.data.kind, survey.data.satisfaction, survey.data.direction) == ("survey_response", 4, "inbound")
    assert survey.id != event.id


def test_the_timeline_puts_steps_among_the_events_by_time_events_first_on_a_tie() -> None:
    events = [_complaint(1, at=T0), _complaint(2, at=T0 + timedelta(hours=2))]
    steps = [AgentAction(T0 + timedelta(hours=1), "acknowledge", "CP-1", "C1", "care.ana", 0),
             AgentAction(T0 + timedelta(hours=2), "resolve", "CP-1", "C1", "care.ana", 1)]
    assert list(timeline(events, steps)) == [events[0], steps[0], events[1], steps[1]]


def test_rows_that_break_the_contract_are_counted_not_published() -> None:
    rows = [Row("C1", "536365", T0, Decimal("12.50"), "GBP", refund=False, country="GB"),
            Row("C1", "536366", T0, Decimal("0.00"), "GBP", refund=False, country="GB")]
    rejected: Counter[str] = Counter()
    events = synthetic_events(rows, 1, rejected)
    assert sum(e.type == "order.purchase.completed" for e in events) == 1
    assert rejected == {"total_amount: amount must be greater than 0": 1}


# --- lifecycle counts over time ---------------------------------------------------------------------

def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_months_run_from_the_first_to_the_last_in_uk_time() -> None:
    assert months("2010-12-01T08:00:00+00:00", "2011-02-01T00:30:00+00:00") == ["2010-12", "2011-01", "2011-02"]
    # 23:30 UTC on 31 March 2011 is already April in London (summer time).
    assert months("2011-03-31T23:30:00+00:00", "2011-04-02T00:00:00+00:00") == ["2011-04"]


def test_a_customer_counts_in_the_stage_of_their_latest_change_at_each_month_end() -> None:
    changes = [("C1", _at("2011-01-05T10:00:00+00:00"), "new"),
               ("C1", _at("2011-01-20T10:00:00+00:00"), "repeat"),
               ("C2", _at("2011-02-03T10:00:00+00:00"), "new"),
               ("C1", _at("2011-03-10T10:00:00+00:00"), "at_risk")]
    series = lifecycle_by_month(changes, ["2011-01", "2011-02", "2011-03"])
    assert series["2011-01"]["repeat"] == 1 and series["2011-01"]["new"] == 0
    assert (series["2011-02"]["repeat"], series["2011-02"]["new"]) == (1, 1)
    assert (series["2011-03"]["at_risk"], series["2011-03"]["new"], series["2011-03"]["repeat"]) == (1, 1, 0)
    assert list(series["2011-03"])[:7] == ["prospect", "new", "repeat", "loyal", "at_risk", "churned", "reactivated"]


def test_changes_are_applied_in_effective_time_order_whatever_order_they_arrive_in() -> None:
    changes = [("C1", _at("2011-01-20T10:00:00+00:00"), "repeat"),
               ("C1", _at("2011-01-05T10:00:00+00:00"), "new")]
    assert lifecycle_by_month(changes, ["2011-01"])["2011-01"]["repeat"] == 1


def test_a_month_without_changes_carries_the_stages_forward_and_earlier_changes_count() -> None:
    changes = [("C1", _at("2010-11-05T10:00:00+00:00"), "new"),
               ("C2", _at("2011-01-05T10:00:00+00:00"), "churned"),
               ("C3", _at("2011-06-05T10:00:00+00:00"), "new")]
    series = lifecycle_by_month(changes, ["2011-01", "2011-02"])
    assert series["2011-02"] == series["2011-01"]
    assert (series["2011-02"]["new"], series["2011-02"]["churned"]) == (1, 1)


def test_lifecycle_changes_are_read_once_each_from_the_tier_changes() -> None:
    event = {"id": "e1", "subject": "C1", "data": {"dimension": "lifecycle", "current": "new",
                                                  "effective_at": "2011-01-05T10:00:00Z"}}
    other = {"id": "e2", "subject": "C1", "data": {"dimension": "vip", "current": "vip",
                                                  "effective_at": "2011-01-05T10:00:00Z"}}
    assert lifecycle_changes([event, event, other]) == [("C1", _at("2011-01-05T10:00:00+00:00"), "new")]


# --- tier changes and complaint events ------------------------------------------------------------

def test_tier_changes_are_counted_per_dimension_and_direction() -> None:
    events = [{"id": str(n), "data": {"dimension": dim, "direction": direction, "bulk": n == 2}}
              for n, (dim, direction) in enumerate([("vip", "initial"), ("vip", "upgrade"), ("lifecycle", "downgrade"),
                                                    ("vip", "upgrade")])]
    counts = tier_change_counts([*events, events[0]])
    assert counts["by_dimension"]["vip"] == {"initial": 1, "upgrade": 2, "downgrade": 0, "lateral": 0}
    assert counts["by_dimension"]["lifecycle"]["downgrade"] == 1
    assert (counts["total"], counts["bulk"]) == (4, 1)


def test_escalations_are_counted_by_level_and_reason_and_breaches_by_target() -> None:
    events = [
        {"id": "1", "type": "complaint.escalated",
         "data": {"changes": {"escalated_to": "supervisor", "reason": "first_response_breached"}}},
        {"id": "2", "type": "complaint.escalated",
         "data": {"changes": {"escalated_to": "manager", "reason": "resolution_breached"}}},
        {"id": "3", "type": "complaint.sla_breached", "data": {"sla_target": "resolution"}},
        {"id": "4", "type": "complaint.opened", "data": {}},
    ]
    counts = complaint_event_counts([*events, events[0]])
    assert counts["escalations"] == 2
    assert counts["escalated_to"] == {"supervisor": 1, "manager": 1}
    assert counts["breaches_by_target"] == {"resolution": 1}
    assert counts["by_type"]["opened"] == 1


# --- the report -------------------------------------------------------------------------------------

def test_the_chart_is_inline_svg_with_a_column_per_month() -> None:
    svg = stacked_columns_svg({"2011-01": {"new": 3, "repeat": 1}, "2011-02": {"new": 2}}, ["new", "repeat"])
    assert svg.startswith("<svg") and svg.count("<rect") == 3 and "2011-01 repeat: 1" in svg


def test_the_report_has_the_mapping_rules_lifecycle_tier_changes_and_sla_sections_and_fetches_nothing() -> None:
    reports = {
        "segments": {"pareto": [], "distribution": {}, "periods": []},
        "complaints": {"total": 2, "breached": 1, "csat": {}, "sla_attainment": {
            "first_response": {"settled": 2, "met": 1, "rate": 0.5}}},
        "complaint_events": complaint_event_counts([]),
        "notifications": {}, "refresh": {},
        "lifecycle": {"2011-01": {"new": 2}},
        "tier_changes": tier_change_counts([{"id": "1", "data": {"dimension": "vip", "direction": "upgrade"}}]),
    }
    page = report_html(Counter({"order.purchase.completed": 1}), reports,
                       Counter({"total_amount: amount must be greater than 0": 4}), Counter({"acknowledged": 1}))
    for text in ("Lifecycle counts over time", "Tier changes", "SLA attainment", "without order_id",
                 "Rejected rows: 4", "first response: 50.0% met", "<svg"):
        assert text in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "<script" not in page
