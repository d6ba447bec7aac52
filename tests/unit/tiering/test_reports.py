"""The tiering reports over hand-made state documents and activities, against counts worked out by
hand; the segments report's running tallies against a count over the customers' final segments."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from services.tiering import reports
from services.tiering.metrics import Entry, compute_metrics
from services.tiering.policy import default_policy

POLICY = default_policy()
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def doc(customer: str, entries: list[Entry], value_tier: str, loyalty: str) -> dict[str, Any]:
    metrics = compute_metrics(entries, NOW, POLICY)
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
    report = tally(docs).report()["churn_risk"]
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
    assert reports.segment_of_doc(fresh, POLICY).churn_reason == "override"
    fresh["updated_at"] = (NOW + timedelta(days=30)).replace(tzinfo=None)
    assert reports.segment_of_doc(fresh, POLICY).churn_reason == "recency"


def test_the_tallies_moved_customer_by_customer_match_a_count_of_the_final_segments() -> None:
    rng = random.Random(7)
    tiers, loyalties, abc = ("low", "medium", "high"), ("general", "loyal", "churn_risk"), ("A", "B", "C")
    moving = reports.Segments()
    final: dict[str, dict[str, Any]] = {}
    for step in range(3_000):
        customer = f"c{rng.randrange(60)}"
        if rng.random() < 0.1:
            moving.drop(customer)
            final.pop(customer, None)
            continue
        entries = [buy(f"{customer}-{step}-{n}", rng.uniform(1, 400)) for n in range(rng.randrange(1, 4))]
        d = doc(customer, entries, rng.choice(tiers), rng.choice(loyalties))
        d["output"]["abc_class"] = rng.choice(abc)
        d["output"]["lifecycle"] = rng.choice(("active", "churned"))
        moving.put(customer, reports.segment_of_doc(d, POLICY))
        final[customer] = d
    expected = tally(final.values()).report()
    assert moving.report() == expected
    assert expected["customers"] == len(final) and expected["distribution"]["abc_class"]
    assert sum(p["new_customers"] for p in expected["periods"]) == len(final)


def tally(docs: Iterable[dict[str, Any]]) -> reports.Segments:
    segments = reports.Segments()
    for d in docs:
        segments.put(d["customer_id"], reports.segment_of_doc(d, POLICY))
    return segments


def at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, tzinfo=UTC)


def test_figures_per_calendar_month_match_a_hand_count() -> None:
    # churned after 60 days without a purchase; the report is made on 20 May.
    activities = [
        reports.Activity(1, [at(1, 5), at(2, 10), at(3, 1)], [at(2, 11)]),  # a: buys Jan, Feb, Mar; refers in Feb
        reports.Activity(1, [at(1, 20)], []),                              # b: buys once; churns 21 Mar
        reports.Activity(1, [at(2, 1), at(5, 2)], [at(3, 3)]),             # c: churns 2 Apr, back 2 May
        reports.Activity(1, [], [at(4, 1)]),                               # d: only refers (no purchase)
        reports.Activity(1, [at(5, 25)], []),                              # e: after the report's time
    ]
    rows = {r["period"]: r for r in reports.period_report(activities, at(5, 20), churned_days=60)}
    assert list(rows) == ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05"]
    # January: a and b buy for the first time; nobody was a customer at its start.
    assert rows["2026-01"] == {"period": "2026-01", "buyers": 2, "repeat_purchase_rate": 0.0,
                               "referral_rate": 0.0, "customers_at_start": 0, "churned": 0, "churn_rate": None,
                               "reactivated": 0}
    # February: a (repeat, refers) and c (new); a and b were customers at its start.
    assert rows["2026-02"] == {"period": "2026-02", "buyers": 2, "repeat_purchase_rate": 0.5,
                               "referral_rate": 0.5, "customers_at_start": 2, "churned": 0, "churn_rate": 0.0,
                               "reactivated": 0}
    # March: a repeats; b churns on 21 March (60 days after 20 Jan); c refers without buying.
    assert rows["2026-03"] == {"period": "2026-03", "buyers": 1, "repeat_purchase_rate": 1.0,
                               "referral_rate": 0.0, "customers_at_start": 3, "churned": 1, "churn_rate": 0.3333,
                               "reactivated": 0}
    # April: nobody buys; c churns on 2 April and a on 30 April (60 days after 1 March). At its start:
    # a (1 Mar) and c (1 Feb, 59 days).
    assert rows["2026-04"] == {"period": "2026-04", "buyers": 0, "repeat_purchase_rate": None,
                               "referral_rate": None, "customers_at_start": 2, "churned": 2, "churn_rate": 1.0,
                               "reactivated": 0}
    # May: c comes back after 90 days; nobody was a customer at its start; e's purchase is after the
    # report's time and d never bought.
    assert rows["2026-05"] == {"period": "2026-05", "buyers": 1, "repeat_purchase_rate": 1.0,
                               "referral_rate": 0.0, "customers_at_start": 0, "churned": 0, "churn_rate": None,
                               "reactivated": 1}


def test_quarters_start_with_the_calendar_quarter() -> None:
    activities = [reports.Activity(1, [at(2, 5), at(5, 1)], [])]
    rows = reports.period_report(activities, at(5, 20), churned_days=365, months=3)
    assert [(r["period"], r["buyers"], r["repeat_purchase_rate"]) for r in rows] == [
        ("2026-01", 1, 0.0), ("2026-04", 1, 1.0)]
