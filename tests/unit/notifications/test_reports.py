"""Win-back figures over hand-made notification records, against a hand count."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.notifications.reports import win_back_report


def record(customer: str, trigger: str, day: int, status: str, reason: str | None = None) -> dict[str, Any]:
    return {"customer_id": customer, "trigger": trigger, "status": status, "reason": reason,
            "created_at": datetime(2026, 3, day, tzinfo=UTC)}


def test_reactivations_after_a_win_back_are_counted_per_outcome_against_those_not_reached() -> None:
    records = [
        record("a", "win_back", 1, "sent"), record("a", "welcome_back", 20, "sent"),           # came back
        record("b", "win_back", 2, "sent"),                                                    # did not
        record("c", "win_back", 3, "sent"), record("c", "win_back", 9, "sent"),               # asked twice
        record("c", "welcome_back", 5, "suppressed", "quiet_hours_deferred"),                  # back in between
        record("d", "welcome_back", 1, "sent"), record("d", "win_back", 4, "sent"),           # back before only
        record("e", "win_back", 2, "suppressed", "no_consent"),
        record("e", "welcome_back", 25, "suppressed", "no_consent"),                           # back unasked
        record("f", "win_back", 2, "suppressed", "no_consent"),
        record("g", "win_back", 2, "failed"),
    ]
    assert win_back_report(records) == {
        "failed": {"customers": 1, "reactivated": 0, "reactivation_rate": 0.0},
        "sent": {"customers": 4, "reactivated": 2, "reactivation_rate": 0.5},
        "suppressed:no_consent": {"customers": 2, "reactivated": 1, "reactivation_rate": 0.5},
    }


def test_no_win_back_records_is_an_empty_report() -> None:
    assert win_back_report([record("a", "welcome_back", 1, "sent")]) == {}
