"""Hysteresis, overrides, the changes and their ids, and the next evaluation, judged at a fixed time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.tiering import domain
from services.tiering.classification import classify
from services.tiering.domain import Override, Snapshot
from services.tiering.metrics import Cutoffs, Entry, Metrics, compute_metrics
from services.tiering.policy import default_policy
from shared.clock import FixedClock

POLICY = default_policy()
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def buy(order: str, amount_cny: int, days_ago: float) -> Entry:
    return Entry(f"p:{order}", "purchase", NOW - timedelta(days=days_ago), amount_cny * 100, order_id=order)


def refund(rid: str, amount_cny: int, days_ago: float, order: str | None = None) -> Entry:
    return Entry(f"r:{rid}", "refund", NOW - timedelta(days=days_ago), amount_cny * 100, order_id=order)


def evaluate(entries: list[Entry], previous: Snapshot | None = None, now: datetime = NOW,
             cutoffs: Cutoffs | None = None) -> tuple[Snapshot, list[domain.Change], Metrics]:
    metrics = compute_metrics(entries, now, POLICY)
    targets = classify(metrics, cutoffs, POLICY, now)
    snapshot, changes = domain.decide(previous or Snapshot(), targets, metrics, cutoffs, POLICY, now, now)
    return snapshot, changes, metrics


def test_an_upgrade_is_immediate_but_a_downgrade_waits_for_the_grace_period() -> None:
    clock = FixedClock(NOW)
    high, _, _ = evaluate([buy("a", 25_000, 3)], now=clock.now())
    ledger = [buy("a", 25_000, 3), refund("r", 22_000, 0)]
    clock.advance(timedelta(days=1))
    held, changes, _ = evaluate(ledger, high, now=clock.now())
    assert held.output["value_tier"] == "high"
    assert held.pending["value_tier"].pending == "low"
    assert "20000.00 CNY" in held.pending["value_tier"].needed
    assert held.pending["value_tier"].spend_needed == (20_000 - 3_000) * 100  # 3,000 left of 25,000
    assert not [c for c in changes if c.dimension == "value_tier"]
    clock.advance(timedelta(days=31))
    after, changes, _ = evaluate(ledger, held, now=clock.now())
    change = next(c for c in changes if c.dimension == "value_tier")
    assert (change.previous, change.current, change.direction) == ("high", "low", "downgrade")
    assert change.effective_at == held.pending["value_tier"].effective_at
    assert change.spend_needed == (20_000 - 3_000) * 100  # what brings high back
    upgrade = next(c for c in evaluate([buy("a", 25_000, 3)])[1] if c.dimension == "value_tier")
    assert upgrade.spend_needed is None
    assert "value_tier" not in after.pending


def test_spending_back_above_the_line_cancels_a_pending_downgrade() -> None:
    high, _, _ = evaluate([buy("a", 25_000, 10)])
    held, _, _ = evaluate([buy("a", 25_000, 10), refund("r", 22_000, 5)], high)
    assert "value_tier" in held.pending
    back, changes, _ = evaluate([buy("a", 25_000, 10), refund("r", 22_000, 5), buy("b", 20_000, 1)], held)
    assert back.output["value_tier"] == "high" and not back.pending
    assert not [c for c in changes if c.dimension == "value_tier"]


def test_a_floor_override_lifts_but_never_lowers_and_a_lock_pins_the_value() -> None:
    base, _, _ = evaluate([buy("a", 100, 3)])
    floor = domain.with_override(base, "value_tier", Override("medium", "floor", "goodwill", "ops", NOW))
    lifted, changes, _ = evaluate([buy("a", 100, 3)], floor)
    assert lifted.output["value_tier"] == "medium"
    assert [c.override for c in changes if c.dimension == "value_tier"] == [True]
    rich, _, _ = evaluate([buy("a", 100, 3), buy("b", 30_000, 1)], lifted)
    assert rich.output["value_tier"] == "high"
    lock = domain.with_override(rich, "value_tier", Override("low", "lock", "fraud check", "ops", NOW))
    locked, changes, _ = evaluate([buy("a", 100, 3), buy("b", 30_000, 1)], lock)
    assert locked.output["value_tier"] == "low"
    assert [(c.direction, c.override) for c in changes if c.dimension == "value_tier"] == [("downgrade", True)]


def test_an_expired_override_stops_applying() -> None:
    base, _, _ = evaluate([buy("a", 100, 3)])
    expiring = domain.with_override(base, "value_tier",
                                    Override("high", "lock", "trial", "ops", NOW, expires_at=NOW + timedelta(days=1)))
    assert evaluate([buy("a", 100, 3)], expiring)[0].output["value_tier"] == "high"
    later, changes, _ = evaluate([buy("a", 100, 3)], expiring, now=NOW + timedelta(days=2))
    assert later.output["value_tier"] == "low" and "value_tier" not in later.overrides


def test_change_event_ids_are_deterministic() -> None:
    _, changes, _ = evaluate([buy("a", 25_000, 3)])
    _, again, _ = evaluate([buy("a", 25_000, 3)])
    assert [c.event_id("C-1") for c in changes] == [c.event_id("C-1") for c in again]
    assert len({c.event_id("C-1") for c in changes}) == len(changes)


def value_tier_id(changes: list[domain.Change]) -> str:
    return next(c for c in changes if c.dimension == "value_tier").event_id("C-1")


def test_a_transition_noticed_in_other_batches_at_another_moment_keeps_its_id() -> None:
    # Before a crash: two purchases in one batch; after it, read again one at a time and a day later.
    _, together, _ = evaluate([buy("a", 6_000, 3), buy("b", 19_000, 2)])
    medium, _, _ = evaluate([buy("a", 6_000, 3)])
    _, apart, _ = evaluate([buy("a", 6_000, 3), buy("b", 19_000, 2)], medium, now=NOW + timedelta(days=1))
    first = next(c for c in together if c.dimension == "value_tier")
    second = next(c for c in apart if c.dimension == "value_tier")
    assert (first.previous, second.previous, first.current, second.current) == (None, "medium", "high", "high")
    assert first.effective_at != second.effective_at
    assert first.event_id("C-1") == second.event_id("C-1")


def test_a_second_arrival_at_a_tier_after_a_downgrade_is_a_new_transition() -> None:
    high, first, _ = evaluate([buy("a", 25_000, 3)])
    ledger = [buy("a", 25_000, 3), refund("r", 22_000, 2)]
    low, down, _ = evaluate(ledger, high, now=NOW + timedelta(days=1), cutoffs=None)
    low, down, _ = evaluate(ledger, low, now=NOW + timedelta(days=40))
    assert low.output["value_tier"] == "low"
    again, up, _ = evaluate([*ledger, buy("c", 30_000, -39)], low, now=NOW + timedelta(days=40))
    assert again.output["value_tier"] == "high"
    ids = {value_tier_id(first), value_tier_id(down), value_tier_id(up)}
    assert len(ids) == 3
    assert again.entered == {**again.entered, "value_tier:high:up": 2, "value_tier:low:down": 1}


def test_the_next_evaluation_is_the_earliest_boundary_ahead() -> None:
    entries = [buy("a", 100, 10)]
    snapshot, _, metrics = evaluate(entries)
    due = domain.next_evaluation(entries, metrics, snapshot, POLICY, NOW)
    assert due == NOW - timedelta(days=10) + timedelta(days=61)  # the churn-risk floor of 60 days, plus one
