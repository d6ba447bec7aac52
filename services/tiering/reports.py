"""The segments report: pure arithmetic over the latest state document of each customer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from shared.contract.events import DIMENSIONS

from .domain import RANKS

#: Fields of a state document the report reads.
PROJECTION = {"customer_id": 1, "rev": 1, "output": 1, "spend_minor": 1, "metrics.first_purchase_at": 1,
              "metrics.lifetime_orders": 1, "metrics.referrals": 1}


def keep_latest(latest: dict[str, Mapping[str, Any]], doc: Mapping[str, Any]) -> None:
    """Keep ``doc`` in ``latest`` if it is the newest revision of its customer seen so far."""
    current = latest.get(doc["customer_id"])
    if current is None or doc["rev"] > current["rev"]:
        latest[doc["customer_id"]] = doc


def segment_report(latest: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Distribution per dimension, the ABC Pareto table and rates per first-purchase month."""
    distribution: dict[str, dict[str, int]] = {dim: {} for dim in DIMENSIONS}
    abc: dict[str, list[int]] = {cls: [0, 0] for cls in RANKS["abc_class"][::-1]}
    cohorts: dict[str, list[int]] = {}
    count = 0
    for doc in latest:
        count += 1
        output = doc.get("output") or {}
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
    }
