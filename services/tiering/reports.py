"""The tiering reports: pure arithmetic over each customer's current classification and metrics.

The segments report is kept as running tallies, moved as each customer's revision moves, so that
asking for it costs nothing however many customers are stored; the period report folds every
stored ledger when asked."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from shared.contract.events import DIMENSIONS

from .classification import CHURN_SIGNALS, churn_signal
from .domain import RANKS
from .metrics import Entry, Metrics
from .policy import Policy

_ABC = RANKS["abc_class"][::-1]


class Segment(NamedTuple):
    """What the segments report counts of one customer."""

    output: tuple[str | None, ...]  # per dimension, in ``DIMENSIONS`` order
    spend: int  # 12-month spend, base cents
    churn_reason: str | None  # at risk of churn: which signal (``override``: none, set by hand)
    cohort: str | None  # month of the first purchase
    repeat: bool
    referred: bool


def churn_reason(metrics: Metrics, policy: Policy, at: datetime) -> str:
    """Which churn signal put a customer at risk, judged as of ``at`` (the revision's time)."""
    signal = churn_signal(metrics, policy, metrics.recency_days(at) or 0)
    return signal[0] if signal else "override"  # at risk with no signal: set by hand


def segment(output: Mapping[str, str | None], metrics: Metrics, policy: Policy, at: datetime) -> Segment:
    first = metrics.first_purchase_at
    return Segment(tuple(output.get(d) for d in DIMENSIONS), metrics.spend_12m,
                   churn_reason(metrics, policy, at) if output.get("loyalty") == "churn_risk" else None,
                   first.strftime("%Y-%m") if first is not None else None,
                   metrics.lifetime_orders >= 2, metrics.referrals > 0)


def segment_of_doc(doc: Mapping[str, Any], policy: Policy, metrics: Metrics | None = None) -> Segment:
    """A stored revision's segment (``metrics``: its metrics, when already read; the store gives
    naive UTC back)."""
    at = doc.get("updated_at") or datetime.now(UTC)
    return segment(doc.get("output") or {}, metrics or Metrics.from_doc(doc.get("metrics") or {}), policy,
                   at if at.tzinfo else at.replace(tzinfo=UTC))


_TIER = DIMENSIONS.index("value_tier")
_ABC_AT = DIMENSIONS.index("abc_class")
_LIFECYCLE = DIMENSIONS.index("lifecycle")


class Segments:
    """Every customer's segment and the tallies the report is made of, moved one customer at a time."""

    def __init__(self) -> None:
        self.rows: dict[str, Segment] = {}
        self._values: Counter[tuple[int, str]] = Counter()  # (dimension index, value) -> customers
        self._abc: Counter[str] = Counter()
        self._abc_spend: Counter[str] = Counter()
        self._cohorts: dict[str, Counter[str]] = {}
        self._at_risk: Counter[tuple[str, str]] = Counter()  # (reason, value tier) -> customers
        #: Customers share a few thousand outputs and months at most: one copy of each is kept.
        self._shared: dict[Any, Any] = {}

    def put(self, customer_id: str, row: Segment) -> None:
        before = self.rows.get(customer_id)
        if before == row:
            return
        share = self._shared.setdefault
        row = row._replace(output=share(row.output, row.output), cohort=share(row.cohort, row.cohort))
        if before is not None:
            self._count(before, -1)
        self.rows[customer_id] = row
        self._count(row, 1)

    def drop(self, customer_id: str) -> None:
        before = self.rows.pop(customer_id, None)
        if before is not None:
            self._count(before, -1)

    def _count(self, row: Segment, sign: int) -> None:
        for index, value in enumerate(row.output):
            if value is not None:
                self._values[index, value] += sign
        abc = row.output[_ABC_AT]
        if abc in _ABC:
            self._abc[abc] += sign
            self._abc_spend[abc] += sign * row.spend
        if row.churn_reason is not None:
            self._at_risk[row.churn_reason, row.output[_TIER] or "none"] += sign
        if row.cohort is not None:
            counts = self._cohorts.setdefault(row.cohort, Counter())
            counts["new"] += sign
            counts["repeat"] += sign * row.repeat
            counts["referral"] += sign * row.referred
            counts["churned"] += sign * (row.output[_LIFECYCLE] == "churned")

    def report(self) -> dict[str, Any]:
        """Distribution per dimension, the ABC Pareto table, rates per first-purchase month, and the
        customers at risk of churn per reason and value tier."""
        distribution: dict[str, dict[str, int]] = {dim: {} for dim in DIMENSIONS}
        for (index, value), n in sorted(self._values.items()):
            if n:
                distribution[DIMENSIONS[index]][value] = n
        at_risk: dict[str, dict[str, int]] = {reason: {} for reason in (*CHURN_SIGNALS, "override")}
        for (reason, tier), n in sorted(self._at_risk.items()):
            if n:
                at_risk[reason][tier] = n
        customers = sum(self._abc.values()) or 1
        spend = sum(self._abc_spend.values()) or 1
        return {
            "customers": len(self.rows),
            "distribution": distribution,
            "pareto": [{"abc_class": cls, "customers": self._abc[cls],
                        "customer_share": round(self._abc[cls] / customers, 4),
                        "spend": str(Decimal(self._abc_spend[cls]) / 100),
                        "spend_share": round(self._abc_spend[cls] / spend, 4)} for cls in _ABC],
            "periods": [{"period": period, "new_customers": c["new"],
                         "repeat_purchase_rate": round(c["repeat"] / c["new"], 4),
                         "referral_rate": round(c["referral"] / c["new"], 4),
                         "churn_rate": round(c["churned"] / c["new"], 4)}
                        for period, c in sorted(self._cohorts.items()) if c["new"]],
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
