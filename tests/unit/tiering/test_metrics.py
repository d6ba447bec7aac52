"""The ledger, its metrics and the population cut-offs, judged at a fixed time."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from services.tiering.classification import _abc
from services.tiering.metrics import (
    Entry,
    Metrics,
    RuleViolation,
    add_entry,
    compute_cutoffs,
    compute_metrics,
    entry_for,
    rfm_scores,
)
from shared.contract import parse_event
from tests.helpers import envelope

from .test_domain import NOW, POLICY, buy, evaluate, refund


def test_net_spend_counts_only_the_trailing_window_and_refunds_lower_it_but_never_below_zero() -> None:
    metrics = compute_metrics([buy("a", 300, 10), buy("old", 9000, 400), refund("r1", 1000, 5)], NOW, POLICY)
    assert metrics.spend_12m == 0
    assert metrics.orders_12m == 1
    assert metrics.orders_prev_12m == 1
    assert metrics.lifetime_spend == 8300_00


def test_a_duplicate_order_id_counts_once() -> None:
    ledger: dict[str, Entry] = {}
    assert add_entry(ledger, buy("a", 100, 1))
    assert not add_entry(ledger, buy("a", 100, 1))
    assert compute_metrics(ledger.values(), NOW, POLICY).spend_12m == 100_00


def test_a_refund_beyond_what_is_left_of_its_order_is_refused() -> None:
    ledger: dict[str, Entry] = {}
    add_entry(ledger, buy("a", 100, 3))
    add_entry(ledger, refund("r1", 60, 2, order="a"))
    with pytest.raises(RuleViolation) as exc:
        add_entry(ledger, refund("r2", 50, 1, order="a"))
    assert exc.value.code == "refund_exceeds_order"


def test_a_general_survey_answer_naming_no_complaint_feeds_loyalty() -> None:
    def answer(n: int, score: int) -> Entry | None:
        # A survey through a general link (a purchase or a period's): no complaint_id.
        event = parse_event(json.dumps(envelope("customer.interaction.recorded", "C-1", {
            "interaction_id": f"survey-{n}", "kind": "survey_response", "channel": "web", "direction": "inbound",
            "satisfaction": score}, time_=NOW - timedelta(days=n))).encode())
        return entry_for(event, POLICY)

    low, high = answer(2, 1), answer(1, 5)
    assert low == Entry("i:survey-2", "survey", NOW - timedelta(days=2), score=1)
    buys = [buy("a", 100, 3), buy("b", 100, 40), buy("c", 100, 80)]
    assert evaluate(buys)[0].output["loyalty"] != "churn_risk"
    snapshot, _, metrics = evaluate([*buys, low])  # type: ignore[list-item]
    assert metrics.latest_satisfaction == 1 and snapshot.output["loyalty"] == "churn_risk"
    # A later, better answer is the one that counts.
    assert evaluate([*buys, low, high])[0].output["loyalty"] != "churn_risk"  # type: ignore[list-item]


def test_an_unknown_currency_is_refused_by_the_policy_table() -> None:
    class Data:
        order_id, total_amount, currency = "o", __import__("decimal").Decimal("1"), "ZAR"

    class Event:
        type, data, time = "order.purchase.completed", Data(), NOW

    with pytest.raises(RuleViolation) as exc:
        entry_for(Event(), POLICY)
    assert exc.value.code == "unknown_currency"


def test_pareto_cutoffs_put_the_top_seventy_percent_of_spend_in_a() -> None:
    spends = [5000_00, 3000_00, 1000_00, 500_00, 300_00] + [20_00] * 10  # total 10,000
    cutoffs = compute_cutoffs(spends, [1] * 15, [1] * 15, POLICY, NOW, 1)
    classes = [_abc(s, cutoffs, POLICY)[0] for s in spends]  # type: ignore[index]
    # 5000 + 3000 pass 70 % of 10,000; 1000 fills the next 20 % exactly; the rest is C.
    assert classes == ["A", "A", "B"] + ["C"] * 12
    assert cutoffs.vip_count == 1 and cutoffs.vip_min == 5000_00


def test_rfm_scores_are_quintiles_of_the_population_and_name_a_segment() -> None:
    spends = list(range(100, 1100, 100))
    cutoffs = compute_cutoffs(spends, list(range(1, 11)), list(range(10, 0, -1)), POLICY, NOW, 1)
    best = Metrics(spend_12m=1000, orders_12m=10, lifetime_orders=10,
                   last_purchase_at=NOW - timedelta(days=1))
    assert rfm_scores(best, cutoffs, NOW) == (5, 5, 5)
    snapshot, _, _ = evaluate([buy(str(i), 1000, 1 + i) for i in range(10)], cutoffs=cutoffs)
    assert snapshot.output["rfm_segment"] == "Champions"
