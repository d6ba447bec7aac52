"""Pure classification rules, judged at a fixed time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from services.tiering import domain
from services.tiering.domain import Entry, Override, RuleViolation, Snapshot
from services.tiering.policy import default_policy
from shared.clock import FixedClock
from shared.contract import parse_event
from tests.helpers import envelope

POLICY = default_policy()
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def buy(order: str, amount_cny: int, days_ago: float) -> Entry:
    return Entry(f"p:{order}", "purchase", NOW - timedelta(days=days_ago), amount_cny * 100, order_id=order)


def refund(rid: str, amount_cny: int, days_ago: float, order: str | None = None) -> Entry:
    return Entry(f"r:{rid}", "refund", NOW - timedelta(days=days_ago), amount_cny * 100, order_id=order)


def evaluate(entries: list[Entry], previous: Snapshot | None = None, now: datetime = NOW,
             cutoffs: domain.Cutoffs | None = None) -> tuple[Snapshot, list[domain.Change], domain.Metrics]:
    metrics = domain.compute_metrics(entries, now, POLICY)
    targets = domain.classify(metrics, cutoffs, POLICY, now)
    snapshot, changes = domain.decide(previous or Snapshot(), targets, metrics, cutoffs, POLICY, now, now)
    return snapshot, changes, metrics


def test_net_spend_counts_only_the_trailing_window_and_refunds_lower_it_but_never_below_zero() -> None:
    metrics = domain.compute_metrics([buy("a", 300, 10), buy("old", 9000, 400), refund("r1", 1000, 5)], NOW, POLICY)
    assert metrics.spend_12m == 0
    assert metrics.orders_12m == 1
    assert metrics.orders_prev_12m == 1
    assert metrics.lifetime_spend == 8300_00


def test_a_duplicate_order_id_counts_once() -> None:
    ledger: dict[str, Entry] = {}
    assert domain.add_entry(ledger, buy("a", 100, 1))
    assert not domain.add_entry(ledger, buy("a", 100, 1))
    assert domain.compute_metrics(ledger.values(), NOW, POLICY).spend_12m == 100_00


def test_a_refund_beyond_what_is_left_of_its_order_is_refused() -> None:
    ledger: dict[str, Entry] = {}
    domain.add_entry(ledger, buy("a", 100, 3))
    domain.add_entry(ledger, refund("r1", 60, 2, order="a"))
    with pytest.raises(RuleViolation) as exc:
        domain.add_entry(ledger, refund("r2", 50, 1, order="a"))
    assert exc.value.code == "refund_exceeds_order"


def test_value_tier_follows_the_policy_thresholds_with_reasons() -> None:
    snapshot, changes, _ = evaluate([buy("a", 25_000, 3)])
    assert snapshot.output["value_tier"] == "high"
    change = next(c for c in changes if c.dimension == "value_tier")
    assert change.direction == "initial" and "25000.00 CNY" in change.reason
    assert evaluate([buy("a", 6_000, 3)])[0].output["value_tier"] == "medium"
    assert evaluate([buy("a", 100, 3)])[0].output["value_tier"] == "low"


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


def test_churn_risk_when_the_gap_exceeds_a_multiple_of_the_customers_own_rhythm() -> None:
    # Every 40 days: at risk after 2.5 x 40 = 100 days of silence, not at the 60-day floor.
    late = [buy(str(i), 500, 310 - 40 * i) for i in range(6)]  # last one 110 days ago
    snapshot, _, metrics = evaluate(late)
    assert metrics.typical_gap_days == 40
    assert snapshot.output["loyalty"] == "churn_risk"
    on_rhythm = [buy(str(i), 500, 280 - 40 * i) for i in range(6)]  # last one 80 days ago
    assert evaluate(on_rhythm)[0].output["loyalty"] != "churn_risk"
    recent = [buy(str(i), 500, 55 - 10 * i) for i in range(6)]  # every 10 days, last one 5 days ago
    assert evaluate(recent)[0].output["loyalty"] == "loyal"


def test_open_complaints_and_low_satisfaction_mean_churn_risk() -> None:
    entries = [buy("a", 200, 3),
               Entry("c:x:1", "complaint", NOW - timedelta(days=2), ref="x", status="received"),
               Entry("c:y:1", "complaint", NOW - timedelta(days=2), ref="y", status="received")]
    assert evaluate(entries)[0].output["loyalty"] == "churn_risk"
    resolved = [*entries, Entry("c:y:2", "complaint", NOW - timedelta(days=1), ref="y", status="resolved")]
    assert evaluate(resolved)[0].output["loyalty"] == "general"
    unhappy = [buy("a", 200, 3), Entry("i:s", "survey", NOW - timedelta(days=1), score=1)]
    assert evaluate(unhappy)[0].output["loyalty"] == "churn_risk"


def referral(rid: str, days_ago: float) -> Entry:
    return Entry(f"i:{rid}", "referral", NOW - timedelta(days=days_ago))


def test_referrals_in_the_window_count_towards_loyal_standing_under_the_policy() -> None:
    # Loyal takes 4 orders and 2,000 CNY; the shipped policy counts a referral as one order.
    three = [buy(str(i), 1000, 10 + 20 * i) for i in range(3)]
    assert evaluate(three)[0].output["loyalty"] == "general"
    snapshot, _, metrics = evaluate([*three, referral("r1", 5)])
    assert metrics.referrals_12m == 1
    assert snapshot.output["loyalty"] == "loyal"
    assert snapshot.reasons["loyalty"] == "3 orders and 1 referral in the window, at least 4"
    # A referral from before the window, or from someone who buys nothing, counts for nothing.
    assert evaluate([*three, referral("old", 400)])[0].output["loyalty"] == "general"
    only_referrals = [referral(str(i), 5 + i) for i in range(5)]
    assert evaluate(only_referrals)[0].output.get("loyalty") != "loyal"
    # A stored policy that does not say keeps its meaning: referrals count for nothing under it.
    silent = POLICY.model_copy(update={"loyalty": POLICY.loyalty.model_copy(update={"referral_orders": 0})})
    metrics = domain.compute_metrics([*three, referral("r1", 5)], NOW, silent)
    assert domain.classify(metrics, None, silent, NOW)["loyalty"][0] == "general"
    assert type(POLICY.loyalty).model_validate({}).referral_orders == 0


def test_each_churn_signal_is_named_in_the_order_the_loyalty_rule_checks_them() -> None:
    def signal(entries: list[Entry]) -> str | None:
        metrics = domain.compute_metrics(entries, NOW, POLICY)
        found = domain.churn_signal(metrics, POLICY, metrics.recency_days(NOW) or 0)
        return found[0] if found else None

    assert signal([buy("a", 100, 200)]) == "recency"
    assert signal([buy("a", 100, 3), *(buy(f"p{i}", 100, 370 + i) for i in range(4))]) == "frequency_drop"
    assert signal([buy("a", 100, 3), *(Entry(f"c:{c}:1", "complaint", NOW - timedelta(days=1), ref=c,
                                             status="received") for c in "xy")]) == "open_complaints"
    assert signal([buy("a", 100, 3), Entry("i:s", "survey", NOW - timedelta(days=1), score=2)]) == "low_satisfaction"
    assert signal([buy("a", 100, 3)]) is None


def test_a_general_survey_answer_naming_no_complaint_feeds_loyalty() -> None:
    def answer(n: int, score: int) -> Entry | None:
        # A survey through a general link (a purchase or a period's): no complaint_id.
        event = parse_event(json.dumps(envelope("customer.interaction.recorded", "C-1", {
            "interaction_id": f"survey-{n}", "kind": "survey_response", "channel": "web", "direction": "inbound",
            "satisfaction": score}, time_=NOW - timedelta(days=n))).encode())
        return domain.entry_for(event, POLICY)

    low, high = answer(2, 1), answer(1, 5)
    assert low == Entry("i:survey-2", "survey", NOW - timedelta(days=2), score=1)
    buys = [buy("a", 100, 3), buy("b", 100, 40), buy("c", 100, 80)]
    assert evaluate(buys)[0].output["loyalty"] != "churn_risk"
    snapshot, _, metrics = evaluate([*buys, low])  # type: ignore[list-item]
    assert metrics.latest_satisfaction == 1 and snapshot.output["loyalty"] == "churn_risk"
    # A later, better answer is the one that counts.
    assert evaluate([*buys, low, high])[0].output["loyalty"] != "churn_risk"  # type: ignore[list-item]


def test_lifecycle_moves_from_prospect_to_new_to_repeat_to_churned_and_back() -> None:
    assert evaluate([Entry("registered", "registered", NOW - timedelta(days=1))])[0].output == {
        "lifecycle": "prospect"}
    assert evaluate([buy("a", 100, 3)])[0].output["lifecycle"] == "new"
    assert evaluate([buy("a", 100, 30), buy("b", 100, 3)])[0].output["lifecycle"] == "repeat"
    assert evaluate([buy("a", 100, 400)])[0].output["lifecycle"] == "churned"
    assert evaluate([buy("a", 100, 500), buy("b", 100, 3)])[0].output["lifecycle"] == "reactivated"


def test_pareto_cutoffs_put_the_top_seventy_percent_of_spend_in_a() -> None:
    spends = [5000_00, 3000_00, 1000_00, 500_00, 300_00] + [20_00] * 10  # total 10,000
    cutoffs = domain.compute_cutoffs(spends, [1] * 15, [1] * 15, POLICY, NOW, 1)
    classes = [domain._abc(s, cutoffs, POLICY)[0] for s in spends]  # type: ignore[index]
    # 5000 + 3000 pass 70 % of 10,000; 1000 fills the next 20 % exactly; the rest is C.
    assert classes == ["A", "A", "B"] + ["C"] * 12
    assert cutoffs.vip_count == 1 and cutoffs.vip_min == 5000_00


def test_rfm_scores_are_quintiles_of_the_population_and_name_a_segment() -> None:
    spends = list(range(100, 1100, 100))
    cutoffs = domain.compute_cutoffs(spends, list(range(1, 11)), list(range(10, 0, -1)), POLICY, NOW, 1)
    best = domain.Metrics(spend_12m=1000, orders_12m=10, lifetime_orders=10,
                          last_purchase_at=NOW - timedelta(days=1))
    assert domain.rfm_scores(best, cutoffs, NOW) == (5, 5, 5)
    snapshot, _, _ = evaluate([buy(str(i), 1000, 1 + i) for i in range(10)], cutoffs=cutoffs)
    assert snapshot.output["rfm_segment"] == "Champions"


ALL_DIMENSIONS = {"value_tier", "abc_class", "vip", "loyalty", "lifecycle", "rfm_segment", "potential"}


def test_before_any_population_exists_a_customer_with_a_purchase_has_every_dimension_unranked() -> None:
    empty = domain.compute_cutoffs([], [], [], POLICY, NOW, 1)  # a refresh when nobody was active
    for cutoffs in (None, empty):
        snapshot, _, _ = evaluate([buy("a", 90_000, 3)], cutoffs=cutoffs)
        assert set(snapshot.output) == ALL_DIMENSIONS
        # The middle of each population class and no VIP, whatever the spend, until cut-offs exist.
        assert (snapshot.output["abc_class"], snapshot.output["vip"], snapshot.output["rfm_segment"]) == (
            "B", "regular", POLICY.segment(3, 3))
        assert "first population refresh" in snapshot.reasons["vip"]
    absolute = POLICY.model_copy(update={"abc": POLICY.abc.model_copy(update={"mode": "absolute"})})
    metrics = domain.compute_metrics([buy("a", 90_000, 3)], NOW, absolute)
    assert domain.classify(metrics, None, absolute, NOW)["abc_class"][0] == "A"  # needs no population


def test_a_customer_without_spend_in_the_window_still_has_every_dimension() -> None:
    cutoffs = domain.compute_cutoffs([1_000_00, 500_00], [2, 1], [5, 10], POLICY, NOW, 1)
    lapsed, _, _ = evaluate([buy("a", 700, 400)], cutoffs=cutoffs)
    assert set(lapsed.output) == ALL_DIMENSIONS
    assert (lapsed.output["abc_class"], lapsed.output["vip"], lapsed.output["rfm_segment"]) == ("C", "regular", "Lost")


def test_a_registered_customer_without_a_purchase_has_only_a_lifecycle() -> None:
    snapshot, _, _ = evaluate([Entry("registered", "registered", NOW - timedelta(days=1))])
    assert snapshot.output == {"lifecycle": "prospect"}


def test_high_potential_lifts_the_abc_class_by_one() -> None:
    cutoffs = domain.compute_cutoffs([100_000_00, 10_000_00, 1_000_00], [1, 1, 1], [1, 1, 1], POLICY, NOW, 1)
    # 600 in the 90 days before, 1,000 in the last 90: 67 % growth.
    snapshot, _, _ = evaluate([buy("a", 600, 120), buy("b", 1_000, 5)], cutoffs=cutoffs)
    assert snapshot.output["potential"] == "high"
    assert snapshot.output["abc_class"] == "B"
    assert "lifted" in snapshot.reasons["abc_class"]


def test_spend_with_nothing_in_the_90_days_before_is_no_trend_and_lifts_nothing() -> None:
    cutoffs = domain.compute_cutoffs([100_000_00, 10_000_00, 1_000_00], [1, 1, 1], [1, 1, 1], POLICY, NOW, 1)
    snapshot, _, _ = evaluate([buy("a", 1_000, 5)], cutoffs=cutoffs)
    assert snapshot.output["potential"] == POLICY.potential.new_spend == "medium"
    assert "too early" in snapshot.reasons["potential"]
    assert "lifted" not in snapshot.reasons["abc_class"]


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


def test_an_unknown_currency_is_refused_by_the_policy_table() -> None:
    class Data:
        order_id, total_amount, currency = "o", __import__("decimal").Decimal("1"), "ZAR"

    class Event:
        type, data, time = "order.purchase.completed", Data(), NOW

    with pytest.raises(RuleViolation) as exc:
        domain.entry_for(Event(), POLICY)
    assert exc.value.code == "unknown_currency"
