"""The segments report: pure arithmetic over the latest state document of each customer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shared.contract.events import DIMENSIONS

from .domain import CHURN_SIGNALS, RANKS, Metrics, churn_signal
from .policy import Policy

#: Fields of a state document the report reads (all the metrics: a churn risk's reason is found
#: again from them, as of the revision's own time).
PROJECTION = {"customer_id": 1, "rev": 1, "output": 1, "spend_minor": 1, "metrics": 1, "updated_at": 1}


def keep_latest(latest: dict[str, Mapping[str, Any]], doc: Mapping[str, Any]) -> None:
    """Keep ``doc`` in ``latest`` if it is the newest revision of its customer seen so far."""
    current = latest.get(doc["customer_id"])
    if current is None or doc["rev"] > current["rev"]:
        latest[doc["customer_id"]] = doc


def churn_reason(doc: Mapping[str, Any], policy: Policy) -> str:
    """Which churn signal put a customer at risk, judged as of the revision's time."""
    metrics = Metrics.from_doc(doc.get("metrics") or {})
    at = doc.get("updated_at") or datetime.now(UTC)
    at = at if at.tzinfo else at.replace(tzinfo=UTC)  # the store gives naive UTC back
    signal = churn_signal(metrics, policy, metrics.recency_days(at) or 0)
    return signal[0] if signal else "override"  # at risk with no signal: set by hand


def segment_report(latest: Iterable[Mapping[str, Any]], policy: Policy) -> dict[str, Any]:
    """Distribution per dimension, the ABC Pareto table, rates per first-purchase month, and the
    customers at risk of churn per reason and value tier."""
    distribution: dict[str, dict[str, int]] = {dim: {} for dim in DIMENSIONS}
    abc: dict[str, list[int]] = {cls: [0, 0] for cls in RANKS["abc_class"][::-1]}
    cohorts: dict[str, list[int]] = {}
    at_risk: dict[str, dict[str, int]] = {reason: {} for reason in (*CHURN_SIGNALS, "override")}
    count = 0
    for doc in latest:
        count += 1
        output = doc.get("output") or {}
        if output.get("loyalty") == "churn_risk":
            tiers = at_risk[churn_reason(doc, policy)]
            tier = output.get("value_tier") or "none"
            tiers[tier] = tiers.get(tier, 0) + 1
        for dim in DIMENSIONS:
            if output.get(dim) is not None:
                distribution[dim][output[dim]] = distribution[dim].get(output[dim], 0) + 1
        if output.get("abc_class") in abc:
            abc[output["abc_class"]][0] += 1
            abc[output["abc_class"]][1] += doc.get("spend_minor", 0)
        metrics = doc.get("metrics") or {}
        first = metrics.get("first_purchase_at")
        if first is not None:
            row = cohorts.setdefault(first.strftime("%Y-%m"), [0, 0, 0, 0])
            row[0] += 1
            row[1] += metrics.get("lifetime_orders", 0) >= 2
            row[2] += metrics.get("referrals", 0) > 0
            row[3] += output.get("lifecycle") == "churned"
    customers = sum(v[0] for v in abc.values()) or 1
    spend = sum(v[1] for v in abc.values()) or 1
    return {
        "customers": count,
        "distribution": distribution,
        "pareto": [{"abc_class": cls, "customers": n, "customer_share": round(n / customers, 4),
                    "spend": str(Decimal(s) / 100), "spend_share": round(s / spend, 4)} for cls, (n, s) in abc.items()],
        "periods": [{"period": period, "new_customers": n, "repeat_purchase_rate": round(r / n, 4),
                     "referral_rate": round(ref / n, 4), "churn_rate": round(c / n, 4)}
                    for period, (n, r, ref, c) in sorted(cohorts.items())],
        "churn_risk": {"customers": sum(sum(t.values()) for t in at_risk.values()),
                       "by_reason": {reason: {"customers": sum(t.values()), "by_value_tier": t}
                                     for reason, t in at_risk.items()}},
    }
