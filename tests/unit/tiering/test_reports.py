"""The segments report over hand-made state documents, against counts worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.tiering import domain, reports
from services.tiering.domain import Entry
from services.tiering.policy import default_policy

POLICY = default_policy()
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def doc(customer: str, entries: list[Entry], value_tier: str, loyalty: str) -> dict[str, Any]:
    metrics = domain.compute_metrics(entries, NOW, POLICY)
    # As the store gives it back: naive UTC.
    return {"customer_id": customer, "rev": 1, "output": {"value_tier": value_tier, "loyalty": loyalty},
            "spend_minor": metrics.spend_12m, "metrics": metrics.to_doc(), "updated_at": NOW.replace(tzinfo=None)}


def buy(order: str, days_ago: float) -> Entry:
    return Entry(f"p:{order}", "purchase", NOW - timedelta(days=days_ago), 100_00, order_id=order)


def test_customers_at_risk_of_churn_are_counted_per_reason_and_value_tier() -> None:
    complaints = [Entry(f"c:{c}:1", "complaint", NOW - timedelta(days=1), ref=c, status="received") for c in "xy"]
    docs = [
        doc("silent-high", [buy("a", 200)], "high", "churn_risk"),
        doc("silent-low", [buy("b", 150)], "low", "churn_risk"),
        doc("silent-low-2", [buy("c", 300)], "low", "churn_risk"),
        doc("complaining", [buy("d", 2), *complaints], "high", "churn_risk"),
        doc("unhappy", [buy("e", 2), Entry("i:s", "survey", NOW - timedelta(days=1), score=1)], "medium", "churn_risk"),
        doc("pinned", [buy("f", 2)], "low", "churn_risk"),  # no signal: an override put it there
        doc("fine", [buy("g", 2)], "low", "general"),
    ]
    report = reports.segment_report(docs, POLICY)["churn_risk"]
    assert report["customers"] == 6
    by = report["by_reason"]
    assert by["recency"] == {"customers": 3, "by_value_tier": {"high": 1, "low": 2}}
    assert by["open_complaints"] == {"customers": 1, "by_value_tier": {"high": 1}}
    assert by["low_satisfaction"] == {"customers": 1, "by_value_tier": {"medium": 1}}
    assert by["override"] == {"customers": 1, "by_value_tier": {"low": 1}}
    assert by["frequency_drop"] == {"customers": 0, "by_value_tier": {}}


def test_a_churn_reason_is_judged_as_of_the_revisions_own_time() -> None:
    # Bought 50 days before the revision: not yet silent then, whatever the time of the report.
    fresh = doc("then", [buy("a", 50)], "low", "churn_risk")
    assert reports.churn_reason(fresh, POLICY) == "override"
    fresh["updated_at"] = (NOW + timedelta(days=30)).replace(tzinfo=None)
    assert reports.churn_reason(fresh, POLICY) == "recency"
