"""Property: the same set of events, in any order and with any duplicates, ends in the same state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.tiering import domain
from services.tiering.classification import churn_after_days, classify
from services.tiering.domain import Snapshot
from services.tiering.metrics import Entry, Metrics, RuleViolation, add_entry, compute_cutoffs, compute_metrics
from services.tiering.policy import default_policy

POLICY = default_policy()
NOW = datetime(2026, 6, 1, tzinfo=UTC)

purchases = st.lists(
    st.tuples(st.integers(0, 700), st.integers(1, 5_000_000)), min_size=0, max_size=12, unique_by=lambda t: t[0],
).map(lambda rows: [Entry(f"p:o{days}", "purchase", NOW - timedelta(days=days, hours=3), cents, order_id=f"o{days}")
                    for days, cents in rows])
refunds = st.lists(st.tuples(st.integers(0, 700), st.integers(1, 500_000)), max_size=4, unique_by=lambda t: t[0]).map(
    lambda rows: [Entry(f"r:x{days}", "refund", NOW - timedelta(days=days), cents) for days, cents in rows])
others = st.lists(st.sampled_from([
    Entry("i:ref1", "referral", NOW - timedelta(days=3)),
    Entry("i:s1", "survey", NOW - timedelta(days=4), score=2),
    Entry("i:s2", "survey", NOW - timedelta(days=2), score=5),
    Entry("c:k:1", "complaint", NOW - timedelta(days=5), ref="k", status="received"),
    Entry("c:k:2", "complaint", NOW - timedelta(days=1), ref="k", status="resolved"),
    Entry("registered", "registered", NOW - timedelta(days=800)),
]), max_size=6)


def replay(entries: list[Entry]) -> tuple[dict[str, Entry], Metrics, dict[str, tuple[str, str]]]:
    ledger: dict[str, Entry] = {}
    for entry in entries:
        try:
            add_entry(ledger, entry)
        except RuleViolation:
            pass
    metrics = compute_metrics(ledger.values(), NOW, POLICY)
    cutoffs = compute_cutoffs([metrics.spend_12m, 1_000_00, 50_000_00], [metrics.orders_12m, 2, 9],
                              [metrics.recency_days(NOW) or 0, 30, 3], POLICY, NOW, 1)
    return ledger, metrics, classify(metrics, cutoffs, POLICY, NOW)


@settings(max_examples=200, deadline=None)
@given(base=st.tuples(purchases, refunds, others).map(lambda t: t[0] + t[1] + t[2]), data=st.data())
def test_the_final_state_does_not_depend_on_order_or_duplicates(base: list[Entry], data: st.DataObject) -> None:
    duplicated = base + data.draw(st.lists(st.sampled_from(base), max_size=10) if base else st.just([]))
    shuffled = data.draw(st.permutations(duplicated))
    ledger_a, metrics_a, classes_a = replay(base)
    ledger_b, metrics_b, classes_b = replay(list(shuffled))
    assert ledger_a == ledger_b
    assert metrics_a == metrics_b
    assert classes_a == classes_b
    # Applying the same state twice changes nothing and announces nothing.
    snapshot, _ = domain.decide(Snapshot(), classes_a, metrics_a, None, POLICY, NOW, NOW)
    again, changes = domain.decide(snapshot, classes_b, metrics_b, None, POLICY, NOW, NOW)
    assert again == snapshot and changes == []


@settings(max_examples=200, deadline=None)
@given(entries=st.tuples(purchases, refunds, others).map(lambda t: t[0] + t[1] + t[2]),
       days_later=st.integers(0, 800))
def test_the_next_evaluation_is_the_earliest_of_every_boundary_still_ahead(entries: list[Entry],
                                                                           days_later: int) -> None:
    ledger, metrics, _ = replay(entries)
    snapshot, _ = domain.decide(Snapshot(), classify(metrics, None, POLICY, NOW), metrics, None, POLICY,
                                NOW, NOW)
    now = NOW + timedelta(days=days_later)
    window, rule, last = timedelta(days=POLICY.window_days), POLICY.lifecycle, metrics.last_purchase_at
    boundaries = [e.time + span for e in ledger.values() if e.kind in ("purchase", "refund")
                  for span in (timedelta(days=90), timedelta(days=180), window, 2 * window)]
    if last is not None:
        boundaries += [last + timedelta(days=days + 1) for days in (
            churn_after_days(metrics, POLICY), rule.at_risk_days, rule.churned_days, rule.reactivated_days)]
    boundaries += [p.effective_at for p in snapshot.pending.values()]
    ahead = [b for b in boundaries if b > now]
    assert domain.next_evaluation(ledger.values(), metrics, snapshot, POLICY, now) == (min(ahead) if ahead else None)
