"""The segments report: pure arithmetic over the latest state document of each customer."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.contract.events import DIMENSIONS

from .domain import CHURN_SIGNALS, RANKS, Entry, Metrics, churn_signal
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


#: Fields of a state document the period report reads (the whole ledger: FerretDB v1 and MongoDB
#: agree on projecting a whole array, not on a field of its elements).
LEDGER_PROJECTION = {"customer_id": 1, "rev": 1, "ledger": 1}


@dataclass(slots=True)
class Activity:
    """A customer's purchase and referral times, older first."""

    rev: int
    purchases: list[datetime]
    referrals: list[datetime]

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Activity:
        times: dict[str, list[datetime]] = {"purchase": [], "referral": []}
        for entry in doc.get("ledger") or ():
            if entry.get("kind") in times:
                at = entry["time"]
                times[entry["kind"]].append(at if at.tzinfo else at.replace(tzinfo=UTC))
        return cls(doc["rev"], sorted(times["purchase"]), sorted(times["referral"]))

    @classmethod
    def of_entries(cls, rev: int, entries: Iterable[Entry]) -> Activity:
        """The same, from a revision not written yet."""
        return cls(rev, sorted(e.time for e in entries if e.kind == "purchase"),
                   sorted(e.time for e in entries if e.kind == "referral"))


def keep_newest(latest: dict[str, Activity], doc: Mapping[str, Any]) -> None:
    """Keep the activity of ``doc`` if it is the newest revision of its customer seen so far."""
    current = latest.get(doc["customer_id"])
    if current is None or doc["rev"] > current.rev:
        latest[doc["customer_id"]] = Activity.of(doc)


def period_starts(first: datetime, now: datetime, months: int) -> list[datetime]:
    """The starts of the calendar periods (``months`` long, UTC) from the one holding ``first`` to
    the one holding ``now``, and the start of the one after."""
    start = datetime(first.year, first.month - (first.month - 1) % months, 1, tzinfo=UTC)
    starts = [start]
    while starts[-1] <= now:
        month = starts[-1].month - 1 + months
        starts.append(datetime(starts[-1].year + month // 12, month % 12 + 1, 1, tzinfo=UTC))
    return starts


def period_report(activities: Iterable[Activity], now: datetime, churned_days: int,
                  months: int = 1) -> list[dict[str, Any]]:
    """Per calendar period: the customers who bought in it; of them, the share who had bought
    before it (repeat purchase) and who referred someone in it (referral); the customers who churned
    in it (their last purchase ``churned_days`` behind them, with none since) against those not
    churned at its start; the customers who came back after having churned. The period holding
    ``now`` counts so far; what lies after ``now`` does not count."""
    span = timedelta(days=churned_days)
    customers = [([t for t in a.purchases if t <= now], [t for t in a.referrals if t <= now]) for a in activities]
    customers = [(bought, referred) for bought, referred in customers if bought or referred]
    if not customers:
        return []
    starts = period_starts(min(min(b + r) for b, r in customers), now, months)
    rows = [_Period() for _ in starts[:-1]]

    def index(moment: datetime) -> int:
        return bisect_right(starts, moment) - 1

    for number, (bought, referred) in enumerate(customers):
        for at in referred:
            rows[index(at)].referrers.add(number)
        for position, at in enumerate(bought):
            row = rows[p := index(at)]
            row.buyers.add(number)
            if bought[0] < starts[p]:
                row.repeat.add(number)
            if position and at - bought[position - 1] > span:
                row.returned += 1
            churns_at = at + span
            if churns_at <= now and (position + 1 == len(bought) or bought[position + 1] > churns_at):
                rows[index(churns_at)].churned += 1
        for p, start in enumerate(starts[:-1]):
            earlier = bisect_left(bought, start)
            if earlier and start - bought[earlier - 1] <= span:
                rows[p].alive += 1
    return [row.figures(start) for start, row in zip(starts, rows)]


@dataclass(slots=True)
class _Period:
    buyers: set[int] = field(default_factory=set)
    repeat: set[int] = field(default_factory=set)
    referrers: set[int] = field(default_factory=set)
    alive: int = 0
    churned: int = 0
    returned: int = 0

    def figures(self, start: datetime) -> dict[str, Any]:
        buyers = len(self.buyers)
        return {
            "period": start.strftime("%Y-%m"), "buyers": buyers,
            "repeat_purchase_rate": round(len(self.repeat) / buyers, 4) if buyers else None,
            "referral_rate": round(len(self.referrers & self.buyers) / buyers, 4) if buyers else None,
            "customers_at_start": self.alive, "churned": self.churned,
            "churn_rate": round(self.churned / self.alive, 4) if self.alive else None,
            "reactivated": self.returned,
        }
