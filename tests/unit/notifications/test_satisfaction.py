"""General satisfaction surveys: which purchases are sampled, when a periodic survey is due, and that
both go through consent, quiet hours and the frequency cap like every care message."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from services.notifications import satisfaction
from services.notifications.domain import Defer, Policy, Profile, Request, Send, Suppress, decide, decide_many
from shared.contract import parse_event
from tests.helpers import envelope

NOW = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
DELAY = timedelta(hours=72)
AGE = timedelta(days=7)
EVERY = {"vip": 90, "high": 180}


def purchase(order_id: str, *, at: datetime = NOW, subject: str = "C-1") -> Any:
    return parse_event(json.dumps(envelope("order.purchase.completed", subject, {
        "order_id": order_id, "total_amount": "88.00", "currency": "CNY"}, time_=at)).encode())


def refund(order_id: str | None, subject: str = "C-1") -> Any:
    data = {"refund_id": f"R-{order_id}", "amount": "88.00", "currency": "CNY"}
    if order_id:
        data["order_id"] = order_id
    return parse_event(json.dumps(envelope("order.purchase.refunded", subject, data, time_=NOW)).encode())


def customer(**kw: Any) -> Profile:
    base: dict[str, Any] = {"customer_id": "C-1", "name": "Li", "email": "li@example.com", "timezone": "Asia/Shanghai",
                            "preferred_channel": "email", "consents": {"care_messages": True, "email": True},
                            "value_tier": "high", "since": date(2026, 1, 1)}
    return Profile(**{**base, **kw})


def test_purchases_are_sampled_by_order_id_alike_on_every_run_and_near_the_share() -> None:
    orders = [f"O-{n}" for n in range(20_000)]
    chosen = [o for o in orders if satisfaction.purchase_sampled(o, 0.1)]
    assert 0.09 < len(chosen) / len(orders) < 0.11
    assert chosen == [o for o in orders if satisfaction.purchase_sampled(o, 0.1)]
    # A larger share keeps the smaller one's purchases: raising it surveys more, not others.
    assert set(chosen) <= {o for o in orders if satisfaction.purchase_sampled(o, 0.3)}
    assert not any(satisfaction.purchase_sampled(o, 0.0) for o in orders)
    assert all(satisfaction.purchase_sampled(o, 1.0) for o in orders)


def test_a_sampled_purchase_asks_for_a_survey_after_the_delay_under_the_key_its_refund_withdraws() -> None:
    order = next(f"O-{n}" for n in range(1000) if satisfaction.purchase_sampled(f"O-{n}", 0.1))
    skipped = next(f"O-{n}" for n in range(1000) if not satisfaction.purchase_sampled(f"O-{n}", 0.1))
    request = satisfaction.purchase_request(purchase(order), share=0.1, delay=DELAY, now=NOW, max_age=AGE)
    assert request is not None
    assert (request.family, request.template, request.transactional) == ("survey", "purchase_survey", False)
    assert request.not_before == NOW + DELAY
    assert request.params == {"order_id": order, "survey": f"purchase:{order}"}
    assert satisfaction.refunded_survey(refund(order)) == request.dedupe_key == f"purchase_survey:{order}:C-1"
    assert satisfaction.refunded_survey(refund(None)) is None
    assert satisfaction.purchase_request(purchase(skipped), share=0.1, delay=DELAY, now=NOW, max_age=AGE) is None
    # Read again long after (a new consumer from the start of the topic): old purchases are not surveyed.
    old = purchase(order, at=NOW - timedelta(days=8))
    assert satisfaction.purchase_request(old, share=0.1, delay=DELAY, now=NOW, max_age=AGE) is None


def test_a_periodic_survey_is_due_once_per_period_of_the_tiers_cadence_from_the_second_period() -> None:
    profile = customer()
    days = [profile.since + timedelta(days=n) for n in range(0, 720)]  # type: ignore[operator]
    due = [d for d in days if satisfaction.periodic_requests(profile, d, every=EVERY, run_id="r")]
    periods = [(d - profile.since).days // 180 for d in due]  # type: ignore[operator]
    assert periods == [1, 2, 3]  # one a period, none in the first
    vip = customer(vip="vip")
    assert len([d for d in days if satisfaction.periodic_due(vip, d, EVERY)]) == 7  # 90 days for a VIP
    assert not any(satisfaction.periodic_due(customer(value_tier="low"), d, EVERY) for d in days)
    assert not any(satisfaction.periodic_due(customer(since=None), d, EVERY) for d in days)


def test_a_periodic_survey_is_keyed_by_its_period_so_a_repeated_run_asks_for_the_same_message() -> None:
    profile = customer()
    day = next(profile.since + timedelta(days=n) for n in range(180, 360)  # type: ignore[operator]
               if satisfaction.periodic_due(profile, profile.since + timedelta(days=n), EVERY))  # type: ignore[operator]
    [first] = satisfaction.periodic_requests(profile, day, every=EVERY, run_id="daily:Asia/Shanghai:a")
    [again] = satisfaction.periodic_requests(profile, day, every=EVERY, run_id="daily:Asia/Shanghai:b")
    assert first.dedupe_key == again.dedupe_key == "satisfaction_survey:180:1:C-1"
    assert first.params == {"cadence_days": 180, "survey": "satisfaction:180:1"}
    assert (first.family, first.template) == ("survey", "satisfaction_survey")
    assert satisfaction.periodic_requests(profile, day + timedelta(days=1), every=EVERY, run_id="r") == []


def test_customers_are_spread_over_the_days_of_a_period() -> None:
    offsets = set()
    for n in range(200):
        profile = customer(customer_id=f"C-{n}")
        offsets |= {k for k in range(180, 360)
                    if satisfaction.periodic_due(profile, profile.since + timedelta(days=k), EVERY)}  # type: ignore[operator]
    assert len(offsets) > 100


def survey(key: str = "s", **kw: Any) -> Request:
    return Request("C-1", "survey", "satisfaction_survey", "satisfaction_survey", key, "run",
                   {"survey": "satisfaction:180:1"}, **kw)


def test_a_survey_needs_care_consent_and_waits_out_the_quiet_hours() -> None:
    assert decide(survey(), customer(consents={"email": True}), now=NOW, policy=Policy()) == Suppress("no_consent")
    night = NOW + timedelta(hours=11)  # 23:00 in Shanghai
    decision = decide(survey(), customer(), now=night, policy=Policy())
    assert isinstance(decision, Defer) and decision.reason == "quiet_hours_deferred"


def test_a_survey_is_the_first_message_the_frequency_cap_drops() -> None:
    requests = [survey("s"), Request("C-1", "follow_up", "follow_up", "follow_up", "f", "run")]
    decided = {r.dedupe_key: d for r, d in decide_many(requests, {"C-1": customer()}, now=NOW, policy=Policy(),
                                                        suppressions={}, recent_care={"C-1": 1})}
    assert isinstance(decided["f"], Send) and decided["s"] == Suppress("frequency_cap")
    assert decide(survey(), customer(), now=NOW, policy=Policy(), recent_care=2) == Suppress("frequency_cap")


def test_a_purchase_survey_is_judged_by_the_cap_when_it_is_due_not_when_it_is_asked_for() -> None:
    later = NOW + DELAY
    scheduled = survey("p", not_before=later)
    assert decide(scheduled, customer(), now=NOW, policy=Policy(), recent_care=2) == Defer(later, reason="scheduled")
    assert isinstance(decide(scheduled, customer(), now=later, policy=Policy(), recent_care=1), Send)
    assert decide(scheduled, customer(), now=later, policy=Policy(), recent_care=2) == Suppress("frequency_cap")
    assert decide(scheduled, customer(consents={}), now=later, policy=Policy()) == Suppress("no_consent")
