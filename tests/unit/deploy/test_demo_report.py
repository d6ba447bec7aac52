"""The demo's results: the aggregations of the events it reads back, and the report."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from deploy.demo_report import (
    complaint_event_counts,
    lifecycle_by_month,
    lifecycle_changes,
    months,
    report_html,
    stacked_columns_svg,
    tier_change_counts,
)

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
