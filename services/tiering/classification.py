"""The target class and its reason per dimension, from a customer's metrics, the population cut-offs
and the policy, before hysteresis and overrides. Pure: no I/O, time comes from the caller."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from .metrics import Cutoffs, Metrics, rfm_scores
from .policy import Policy


def money(minor: int) -> str:
    return format(Decimal(minor) / 100, ".2f")


def classify(metrics: Metrics, cutoffs: Cutoffs | None, policy: Policy, now: datetime) -> dict[str, tuple[str, str]]:
    """The target class and the reason for it per dimension, before hysteresis and overrides."""
    cur = policy.base_currency
    out: dict[str, tuple[str, str]] = {}
    recency = metrics.recency_days(now)
    spend = metrics.spend_12m
    window = f"the trailing {policy.window_days} days"
    if metrics.lifetime_orders == 0:
        if metrics.registered:
            out["lifecycle"] = ("prospect", "registered, no purchase yet")
        return out

    high, medium = Policy.minor(policy.value_tier.high), Policy.minor(policy.value_tier.medium)
    if spend >= high:
        out["value_tier"] = ("high", f"net spend {money(spend)} {cur} in {window} is at least {money(high)}")
    elif spend >= medium:
        out["value_tier"] = ("medium", f"net spend {money(spend)} {cur} in {window} is at least {money(medium)}")
    else:
        out["value_tier"] = ("low", f"net spend {money(spend)} {cur} in {window} is below {money(medium)}")

    growth_high, growth_medium = policy.potential.high_growth, policy.potential.medium_growth
    recent, before = metrics.spend_90d, metrics.spend_prev_90d
    if recent < Policy.minor(policy.potential.min_recent_spend) or recent == 0:
        out["potential"] = ("low", f"spend in the last 90 days {money(recent)} {cur} is too low to judge growth")
    elif before == 0:
        out["potential"] = (policy.potential.new_spend, f"new spend: {money(recent)} {cur} in the last 90 days "
                                                        "and nothing in the 90 before, too early to see a trend")
    else:
        growth = Decimal(recent - before) / Decimal(before)
        level = "high" if growth >= growth_high else "medium" if growth >= growth_medium else "low"
        out["potential"] = (level, f"growth {growth:.0%}: {money(recent)} {cur} in the last 90 days against "
                                   f"{money(before)} in the 90 before")

    if cutoffs is None or not cutoffs.population or cutoffs.vip_min is None:
        # Nobody to rank against yet (a new deployment, or nobody active at the last refresh): the
        # middle of every population class, and no VIP, until the first cut-offs measure the customer.
        out.update(_unranked(policy))
        if policy.abc.mode == "absolute":
            out["abc_class"] = _abc(spend, None, policy)
    else:
        out["abc_class"] = _abc(spend, cutoffs, policy)
        if spend >= cutoffs.vip_min:
            out["vip"] = ("vip", f"net spend {money(spend)} {cur} is in the top "
                                 f"{policy.vip.top_share:.0%} (at least {money(cutoffs.vip_min)})")
        else:
            out["vip"] = ("regular", f"net spend {money(spend)} {cur} is below the VIP line {money(cutoffs.vip_min)}")
        r, f, m = rfm_scores(metrics, cutoffs, now) or (1, 1, 1)
        out["rfm_segment"] = (policy.segment(r, f), f"RFM scores R{r} F{f} M{m}")
    level, reason = out["abc_class"]
    if policy.potential.lift_abc and out["potential"][0] == "high" and level != "A":
        out["abc_class"] = ("A" if level == "B" else "B", reason + "; lifted one class for high potential")

    loyalty = _loyalty(metrics, policy, recency or 0)
    out["loyalty"] = loyalty
    out["lifecycle"] = _lifecycle(metrics, policy, recency or 0, loyalty[0], now)
    return out


UNRANKED = "no population to rank against yet: decided by the first population refresh"


def _unranked(policy: Policy) -> dict[str, tuple[str, str]]:
    return {"abc_class": ("B", UNRANKED), "vip": ("regular", UNRANKED),
            "rfm_segment": (policy.segment(3, 3), f"R3 F3 M3, the middle: {UNRANKED}")}


def _abc(spend: int, cutoffs: Cutoffs | None, policy: Policy) -> tuple[str, str]:
    cur = policy.base_currency
    if policy.abc.mode == "absolute":
        a_min, b_min = Policy.minor(policy.abc.a_min_spend), Policy.minor(policy.abc.b_min_spend)
        how = "absolute threshold"
    else:
        assert cutoffs is not None and cutoffs.abc_a_min is not None  # a population with spend
        a_min, b_min = cutoffs.abc_a_min, cutoffs.abc_b_min or cutoffs.abc_a_min
        how = f"Pareto cut-off v{cutoffs.version}"
    if spend >= a_min:
        return "A", f"net spend {money(spend)} {cur} reaches the A {how} {money(a_min)}"
    if spend >= b_min:
        return "B", f"net spend {money(spend)} {cur} reaches the B {how} {money(b_min)}"
    return "C", f"net spend {money(spend)} {cur} is below the B {how} {money(b_min)}"


def churn_after_days(metrics: Metrics, policy: Policy) -> float:
    """Days without a purchase after which the customer is a churn risk."""
    own = float(policy.loyalty.gap_multiple) * metrics.typical_gap_days if metrics.typical_gap_days else 0.0
    return max(float(policy.loyalty.min_gap_days), own)


#: Why a customer is a churn risk, in the order the loyalty rule checks them.
CHURN_SIGNALS = ("recency", "frequency_drop", "open_complaints", "low_satisfaction")


def churn_signal(metrics: Metrics, policy: Policy, recency: int) -> tuple[str, str] | None:
    """The first of ``CHURN_SIGNALS`` the customer shows, with its reason; None when none."""
    rule = policy.loyalty
    limit = churn_after_days(metrics, policy)
    if recency > limit:
        return "recency", f"{recency} days since the last purchase, more than the expected {limit:.0f}"
    if metrics.orders_prev_12m and metrics.orders_12m <= metrics.orders_prev_12m * (1 - rule.frequency_drop_share):
        return "frequency_drop", (f"orders fell from {metrics.orders_prev_12m} to {metrics.orders_12m} against "
                                  f"the previous period")
    if metrics.open_complaints >= rule.max_open_complaints:
        return "open_complaints", f"{metrics.open_complaints} open complaints"
    if metrics.latest_satisfaction is not None and metrics.latest_satisfaction <= rule.low_satisfaction:
        return "low_satisfaction", f"latest satisfaction {metrics.latest_satisfaction} of 5"
    return None


def _loyalty(metrics: Metrics, policy: Policy, recency: int) -> tuple[str, str]:
    rule = policy.loyalty
    signal = churn_signal(metrics, policy, recency)
    if signal is not None:
        return "churn_risk", signal[1]
    # A referral in the window counts as ``referral_orders`` orders towards loyal standing, for a
    # customer who buys at all: bringing others is loyalty too.
    referred = rule.referral_orders * metrics.referrals_12m if metrics.orders_12m else 0
    counted = metrics.orders_12m + referred
    orders = f"{metrics.orders_12m} orders"
    if referred:
        orders += f" and {metrics.referrals_12m} referral" + ("s" if metrics.referrals_12m > 1 else "")
    if counted >= rule.loyal_min_orders and metrics.spend_12m >= Policy.minor(rule.loyal_min_spend):
        return "loyal", f"{orders} in the window, at least {rule.loyal_min_orders}"
    return "general", f"{orders} in the window, below {rule.loyal_min_orders} for loyal"


def _lifecycle(metrics: Metrics, policy: Policy, recency: int, loyalty: str, now: datetime) -> tuple[str, str]:
    rule = policy.lifecycle
    if recency > rule.churned_days:
        return "churned", f"{recency} days since the last purchase, more than {rule.churned_days}"
    if recency > rule.at_risk_days:
        return "at_risk", f"{recency} days since the last purchase, more than {rule.at_risk_days}"
    if loyalty == "churn_risk":
        return "at_risk", "loyalty says churn risk"
    if metrics.last_gap_days is not None and metrics.last_gap_days > rule.churned_days \
            and recency <= rule.reactivated_days:
        return "reactivated", f"bought again after {metrics.last_gap_days:.0f} days away"
    if metrics.lifetime_orders == 1:
        return "new", "one purchase so far"
    if loyalty == "loyal":
        return "loyal", "repeat buyer with loyal standing"
    return "repeat", f"{metrics.lifetime_orders} purchases"
