"""The target class and its reason per dimension, judged at a fixed time."""

from __future__ import annotations

from datetime import timedelta

from services.tiering.classification import churn_signal, classify
from services.tiering.metrics import Entry, compute_cutoffs, compute_metrics

from .test_domain import NOW, POLICY, buy, evaluate


def test_value_tier_follows_the_policy_thresholds_with_reasons() -> None:
    snapshot, changes, _ = evaluate([buy("a", 25_000, 3)])
    assert snapshot.output["value_tier"] == "high"
    change = next(c for c in changes if c.dimension == "value_tier")
    assert change.direction == "initial" and "25000.00 CNY" in change.reason
    assert evaluate([buy("a", 6_000, 3)])[0].output["value_tier"] == "medium"
    assert evaluate([buy("a", 100, 3)])[0].output["value_tier"] == "low"


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
    metrics = compute_metrics([*three, referral("r1", 5)], NOW, silent)
    assert classify(metrics, None, silent, NOW)["loyalty"][0] == "general"
    assert type(POLICY.loyalty).model_validate({}).referral_orders == 0


def test_each_churn_signal_is_named_in_the_order_the_loyalty_rule_checks_them() -> None:
    def signal(entries: list[Entry]) -> str | None:
        metrics = compute_metrics(entries, NOW, POLICY)
        found = churn_signal(metrics, POLICY, metrics.recency_days(NOW) or 0)
        return found[0] if found else None

    assert signal([buy("a", 100, 200)]) == "recency"
    assert signal([buy("a", 100, 3), *(buy(f"p{i}", 100, 370 + i) for i in range(4))]) == "frequency_drop"
    assert signal([buy("a", 100, 3), *(Entry(f"c:{c}:1", "complaint", NOW - timedelta(days=1), ref=c,
                                             status="received") for c in "xy")]) == "open_complaints"
    assert signal([buy("a", 100, 3), Entry("i:s", "survey", NOW - timedelta(days=1), score=2)]) == "low_satisfaction"
    assert signal([buy("a", 100, 3)]) is None


def test_lifecycle_moves_from_prospect_to_new_to_repeat_to_churned_and_back() -> None:
    assert evaluate([Entry("registered", "registered", NOW - timedelta(days=1))])[0].output == {
        "lifecycle": "prospect"}
    assert evaluate([buy("a", 100, 3)])[0].output["lifecycle"] == "new"
    assert evaluate([buy("a", 100, 30), buy("b", 100, 3)])[0].output["lifecycle"] == "repeat"
    assert evaluate([buy("a", 100, 400)])[0].output["lifecycle"] == "churned"
    assert evaluate([buy("a", 100, 500), buy("b", 100, 3)])[0].output["lifecycle"] == "reactivated"


ALL_DIMENSIONS = {"value_tier", "abc_class", "vip", "loyalty", "lifecycle", "rfm_segment", "potential"}


def test_before_any_population_exists_a_customer_with_a_purchase_has_every_dimension_unranked() -> None:
    empty = compute_cutoffs([], [], [], POLICY, NOW, 1)  # a refresh when nobody was active
    for cutoffs in (None, empty):
        snapshot, _, _ = evaluate([buy("a", 90_000, 3)], cutoffs=cutoffs)
        assert set(snapshot.output) == ALL_DIMENSIONS
        # The middle of each population class and no VIP, whatever the spend, until cut-offs exist.
        assert (snapshot.output["abc_class"], snapshot.output["vip"], snapshot.output["rfm_segment"]) == (
            "B", "regular", POLICY.segment(3, 3))
        assert "first population refresh" in snapshot.reasons["vip"]
    absolute = POLICY.model_copy(update={"abc": POLICY.abc.model_copy(update={"mode": "absolute"})})
    metrics = compute_metrics([buy("a", 90_000, 3)], NOW, absolute)
    assert classify(metrics, None, absolute, NOW)["abc_class"][0] == "A"  # needs no population


def test_a_customer_without_spend_in_the_window_still_has_every_dimension() -> None:
    cutoffs = compute_cutoffs([1_000_00, 500_00], [2, 1], [5, 10], POLICY, NOW, 1)
    lapsed, _, _ = evaluate([buy("a", 700, 400)], cutoffs=cutoffs)
    assert set(lapsed.output) == ALL_DIMENSIONS
    assert (lapsed.output["abc_class"], lapsed.output["vip"], lapsed.output["rfm_segment"]) == ("C", "regular", "Lost")


def test_a_registered_customer_without_a_purchase_has_only_a_lifecycle() -> None:
    snapshot, _, _ = evaluate([Entry("registered", "registered", NOW - timedelta(days=1))])
    assert snapshot.output == {"lifecycle": "prospect"}


def test_high_potential_lifts_the_abc_class_by_one() -> None:
    cutoffs = compute_cutoffs([100_000_00, 10_000_00, 1_000_00], [1, 1, 1], [1, 1, 1], POLICY, NOW, 1)
    # 600 in the 90 days before, 1,000 in the last 90: 67 % growth.
    snapshot, _, _ = evaluate([buy("a", 600, 120), buy("b", 1_000, 5)], cutoffs=cutoffs)
    assert snapshot.output["potential"] == "high"
    assert snapshot.output["abc_class"] == "B"
    assert "lifted" in snapshot.reasons["abc_class"]


def test_spend_with_nothing_in_the_90_days_before_is_no_trend_and_lifts_nothing() -> None:
    cutoffs = compute_cutoffs([100_000_00, 10_000_00, 1_000_00], [1, 1, 1], [1, 1, 1], POLICY, NOW, 1)
    snapshot, _, _ = evaluate([buy("a", 1_000, 5)], cutoffs=cutoffs)
    assert snapshot.output["potential"] == POLICY.potential.new_spend == "medium"
    assert "too early" in snapshot.reasons["potential"]
    assert "lifted" not in snapshot.reasons["abc_class"]
