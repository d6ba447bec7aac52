"""Pure rules of the tiering service: no I/O, time comes from the caller.

A customer's ledger (entries keyed by natural ids) gives the metrics; metrics, the population
cut-offs and the policy give a target class per dimension; hysteresis and overrides turn targets
and the previous snapshot into the new snapshot and the list of changes.
"""

from __future__ import annotations

import functools
import hashlib
import math
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from statistics import median
from typing import Any, Iterable, Mapping, NamedTuple

from shared.contract.events import DIMENSIONS

from .policy import Policy

NAMESPACE = uuid.UUID("0b6f8a52-3c1d-5e7a-9f10-7a1e2c3d4b5f")
_NAMESPACE_BYTES = NAMESPACE.bytes


def stable_id(name: str) -> str:
    """``str(uuid.uuid5(NAMESPACE, name))`` without building a UUID object, which cost more than the
    hash on the hot path (eight ids per new customer)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
CLOSED_COMPLAINT = frozenset({"resolved", "closed"})
RANKS: dict[str, tuple[str, ...]] = {
    "value_tier": ("low", "medium", "high"),
    "abc_class": ("C", "B", "A"),
    "vip": ("regular", "vip"),
    "potential": ("low", "medium", "high"),
    "loyalty": ("churn_risk", "general", "loyal"),
    "lifecycle": ("churned", "at_risk", "prospect", "new", "reactivated", "repeat", "loyal"),
    "rfm_segment": ("Lost", "Hibernating", "About to Sleep", "At Risk", "Can't Lose Them", "Need Attention",
                    "Promising", "New", "Potential Loyalist", "Loyal", "Champions"),
}


class RuleViolation(Exception):
    """A well-formed event that the rules refuse; ``code`` becomes the DLQ ``x-error``."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")


# --- Ledger ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One ledger line. ``key`` is the natural id (``p:<order_id>``, ``r:<refund_id>`` ...)."""

    key: str
    kind: str  # purchase | refund | referral | survey | complaint | registered
    time: datetime
    minor: int = 0  # base-currency cents
    order_id: str | None = None
    ref: str | None = None  # complaint id for complaint entries
    status: str | None = None
    score: int | None = None
    currency: str | None = None  # what the customer paid in, for figures shown in it


Ledger = dict[str, Entry]


def add_entry(ledger: Ledger, entry: Entry) -> bool:
    """Add ``entry`` unless its natural id is there already; False for a duplicate."""
    if entry.key in ledger:
        return False
    if entry.kind == "refund" and entry.order_id:
        order = ledger.get(f"p:{entry.order_id}")
        if order is not None:
            refunded = sum(e.minor for e in ledger.values() if e.kind == "refund" and e.order_id == entry.order_id)
            if refunded + entry.minor > order.minor:
                left = Decimal(order.minor - refunded) / 100
                raise RuleViolation("refund_exceeds_order",
                                    f"refund of order {entry.order_id} exceeds what is left of it ({left})")
    ledger[entry.key] = entry
    return True


# --- Metrics ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metrics:
    spend_12m: int = 0
    orders_12m: int = 0
    orders_prev_12m: int = 0
    spend_90d: int = 0
    spend_prev_90d: int = 0
    lifetime_spend: int = 0
    lifetime_orders: int = 0
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    typical_gap_days: float | None = None
    #: Days between the last purchase and the one before it (a long one means a comeback).
    last_gap_days: float | None = None
    referrals: int = 0
    #: Referrals within the window: what loyalty counts (``LoyaltyRule.referral_orders``).
    referrals_12m: int = 0
    open_complaints: int = 0
    latest_satisfaction: int | None = None
    registered: bool = False
    #: The one currency the customer paid in (None when several, or not known).
    currency: str | None = None

    def recency_days(self, now: datetime) -> int | None:
        if self.last_purchase_at is None:
            return None
        return max(0, (now - self.last_purchase_at).days)

    def to_doc(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every value and showed up first in profiles.
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Metrics:
        return cls(**{k: v for k, v in doc.items() if k in cls.__dataclass_fields__})


def _net(purchases: int, refunds: int) -> int:
    return max(0, purchases - refunds)


def compute_metrics(ledger: Iterable[Entry], now: datetime, policy: Policy) -> Metrics:
    """Everything is derived from the ledger, so a duplicate or a late event cannot double count."""
    window = timedelta(days=policy.window_days)
    start, prev_start = now - window, now - 2 * window
    d90, d180 = now - timedelta(days=90), now - timedelta(days=180)
    buy_12m = refund_12m = buy_90 = refund_90 = buy_prev90 = refund_prev90 = 0
    orders_12m = orders_prev = lifetime_buy = lifetime_refund = 0
    times: list[datetime] = []
    referrals = referrals_12m = 0
    complaints: dict[str, Entry] = {}
    satisfaction: Entry | None = None
    registered = False
    currencies: set[str | None] = set()
    for e in ledger:
        if e.time > now:
            continue  # judged as of ``now``: an entry from its future does not count yet
        if e.kind in ("purchase", "refund"):
            currencies.add(e.currency)
            sign_buy = e.kind == "purchase"
            if sign_buy:
                times.append(e.time)
                lifetime_buy += e.minor
            else:
                lifetime_refund += e.minor
            if e.time > start:
                if sign_buy:
                    buy_12m += e.minor
                    orders_12m += 1
                else:
                    refund_12m += e.minor
                if e.time > d90:
                    buy_90, refund_90 = (buy_90 + e.minor, refund_90) if sign_buy else (buy_90, refund_90 + e.minor)
                elif e.time > d180:
                    if sign_buy:
                        buy_prev90 += e.minor
                    else:
                        refund_prev90 += e.minor
            elif e.time > prev_start and sign_buy:
                orders_prev += 1
        elif e.kind == "referral":
            referrals += 1
            referrals_12m += e.time > start
        elif e.kind == "complaint":
            current = complaints.get(e.ref or "")
            if current is None or (e.time, e.key) > (current.time, current.key):
                complaints[e.ref or ""] = e
        elif e.kind == "registered":
            registered = True
        if e.score is not None and (satisfaction is None or (e.time, e.key) > (satisfaction.time, satisfaction.key)):
            satisfaction = e
    times.sort()
    gaps = [(b - a).total_seconds() / 86400 for a, b in zip(times, times[1:])]
    return Metrics(
        currency=next(iter(currencies)) if len(currencies) == 1 else None,
        spend_12m=_net(buy_12m, refund_12m),
        orders_12m=orders_12m,
        orders_prev_12m=orders_prev,
        spend_90d=_net(buy_90, refund_90),
        spend_prev_90d=_net(buy_prev90, refund_prev90),
        lifetime_spend=_net(lifetime_buy, lifetime_refund),
        lifetime_orders=len(times),
        first_purchase_at=times[0] if times else None,
        last_purchase_at=times[-1] if times else None,
        typical_gap_days=round(median(gaps), 3) if gaps else None,
        last_gap_days=round(gaps[-1], 3) if gaps else None,
        referrals=referrals,
        referrals_12m=referrals_12m,
        open_complaints=sum(1 for e in complaints.values() if e.status not in CLOSED_COMPLAINT),
        latest_satisfaction=satisfaction.score if satisfaction else None,
        registered=registered,
    )


# --- Population cut-offs ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Cutoffs:
    """Population-wide thresholds, recomputed by a refresh; amounts in base cents."""

    version: int
    computed_at: datetime
    population: int = 0
    abc_a_min: int | None = None
    abc_b_min: int | None = None
    vip_min: int | None = None
    vip_count: int = 0
    r_bounds: tuple[int, ...] = ()
    f_bounds: tuple[int, ...] = ()
    m_bounds: tuple[int, ...] = ()
    policy_version: str = ""
    #: The active population's net spend in the window, which a refresh compares drift with.
    spend_total: int = 0

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        for name in ("r_bounds", "f_bounds", "m_bounds"):
            doc[name] = list(doc[name])
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Cutoffs:
        values = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        for name in ("r_bounds", "f_bounds", "m_bounds"):
            values[name] = tuple(values.get(name) or ())
        return cls(**values)


def quintile_bounds(values: list[int]) -> tuple[int, ...]:
    """Nearest-rank 20/40/60/80 % points of ``values`` (sorted in place)."""
    if not values:
        return ()
    values.sort()
    n = len(values)
    return tuple(values[max(0, math.ceil(q * n / 5) - 1)] for q in range(1, 5))


def compute_cutoffs(spends: list[int], orders: list[int], recencies: list[int], policy: Policy,
                    now: datetime, version: int) -> Cutoffs:
    """Cut-offs from three parallel lists over the customers active in the window (spend in cents).

    The lists are plain ints, a few dozen bytes per customer, so a population of millions fits.
    """
    spending = sorted((s for s in spends if s > 0), reverse=True)
    total = sum(spending)
    a_min = b_min = vip_min = None
    vip_count = 0
    if spending:
        a_line = total * policy.abc.a_share
        b_line = total * (policy.abc.a_share + policy.abc.b_share)
        cumulative = 0
        for spend in spending:
            # A customer belongs to the class whose share the spend before theirs had not yet filled.
            if cumulative < a_line:
                a_min = spend
            elif cumulative < b_line:
                b_min = spend
            cumulative += spend
        b_min = b_min if b_min is not None else a_min
        vip_count = max(1, math.floor(len(spending) * policy.vip.top_share))
        vip_min = max(spending[vip_count - 1], Policy.minor(policy.vip.min_spend), 1)
        vip_count = sum(1 for s in spending if s >= vip_min)
    return Cutoffs(
        version=version, computed_at=now, population=len(spending), abc_a_min=a_min, abc_b_min=b_min,
        vip_min=vip_min, vip_count=vip_count, r_bounds=quintile_bounds(list(recencies)),
        f_bounds=quintile_bounds(list(orders)), m_bounds=quintile_bounds(list(spends)),
        policy_version=policy.version, spend_total=total,
    )


def score(value: int, bounds: tuple[int, ...], *, lower_is_better: bool = False) -> int:
    if lower_is_better:
        return 1 + sum(1 for b in bounds if value < b)
    return 1 + sum(1 for b in bounds if value > b)


def rfm_scores(metrics: Metrics, cutoffs: Cutoffs | None, now: datetime) -> tuple[int, int, int] | None:
    if cutoffs is None or not cutoffs.r_bounds:
        return None
    recency = metrics.recency_days(now) or 0
    return (score(recency, cutoffs.r_bounds, lower_is_better=True), score(metrics.orders_12m, cutoffs.f_bounds),
            score(metrics.spend_12m, cutoffs.m_bounds))


# --- Population standing ----------------------------------------------------------------------------

#: The dimensions whose class depends on the population cut-offs.
POPULATION_DIMENSIONS = ("abc_class", "vip", "rfm_segment")


class Standing(NamedTuple):
    """What a population refresh needs of one customer, small enough to keep for every customer:
    the metrics the population-based classes read, the classes held in them and whether a
    downgrade of one of them is pending."""

    spend_12m: int
    orders_12m: int
    last_purchase_at: datetime | None
    spend_90d: int
    spend_prev_90d: int
    lifetime_orders: int
    held: tuple[str | None, ...]
    pending: bool

    def metrics(self) -> Metrics:
        """Metrics with the fields the population-based classes read (the others left at zero)."""
        return Metrics(spend_12m=self.spend_12m, orders_12m=self.orders_12m, last_purchase_at=self.last_purchase_at,
                       spend_90d=self.spend_90d, spend_prev_90d=self.spend_prev_90d,
                       lifetime_orders=self.lifetime_orders)


def standing(metrics: Metrics, held: Mapping[str, str], pending: Iterable[str]) -> Standing:
    return Standing(metrics.spend_12m, metrics.orders_12m, metrics.last_purchase_at, metrics.spend_90d,
                    metrics.spend_prev_90d, metrics.lifetime_orders,
                    tuple(held.get(d) for d in POPULATION_DIMENSIONS),
                    any(d in POPULATION_DIMENSIONS for d in pending))


def population_moves(s: Standing, cutoffs: Cutoffs | None, policy: Policy, now: datetime) -> bool:
    """Whether new cut-offs may move one of the customer's population-based classes."""
    if s.pending:
        return True
    targets = classify(s.metrics(), cutoffs, policy, now)
    return any(targets.get(d, (None,))[0] != held for d, held in zip(POPULATION_DIMENSIONS, s.held))


# --- Classification --------------------------------------------------------------------------------

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


# --- Hysteresis, overrides, changes ------------------------------------------------------------------

@dataclass(frozen=True)
class Override:
    value: str
    mode: str  # floor | lock
    reason: str
    actor: str
    set_at: datetime
    expires_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True)
class Pending:
    current: str
    pending: str
    below_since: datetime
    effective_at: datetime
    needed: str
    #: Net spend (base cents) still missing to keep ``current``, where a spend line decides it.
    spend_needed: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """What is stored and published for one customer."""

    held: dict[str, str] = field(default_factory=dict)  # after hysteresis, before overrides
    output: dict[str, str] = field(default_factory=dict)  # what downstream sees
    reasons: dict[str, str] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    overrides: dict[str, Override] = field(default_factory=dict)
    #: How many times each value was entered, per dimension and way (``entered_key``): what
    #: numbers a change, so that its id does not depend on when or by which batch it was noticed.
    entered: dict[str, int] = field(default_factory=dict)


def entered_key(dimension: str, current: str, direction: str) -> str:
    """A change is "the n-th time ``current`` was reached from below (or above, or beside)". An
    initial classification counts as reached from below: re-read after a crash in other batches,
    a new customer may be classified high at once where low and then high were published before,
    and it is the same arrival at high."""
    way = {"downgrade": "down", "lateral": "lateral"}.get(direction, "up")
    return f"{dimension}:{current}:{way}"


@dataclass(frozen=True)
class Change:
    dimension: str
    previous: str | None
    current: str
    direction: str
    reason: str
    override: bool
    effective_at: datetime
    #: The how-many-th arrival at ``current`` this is (see ``entered_key``).
    ordinal: int = 1
    #: After a downgrade where a spend line decides: the net spend (base minor) that brings
    #: ``previous`` back.
    spend_needed: int | None = None

    def event_id(self, customer_id: str) -> str:
        """The transition's identity: the customer, and which arrival at which value it is. Neither
        the batch that noticed it nor the moment does count: after a kill -9 the records not
        committed are read again in other batches and at another clock, and the same transition
        must come out under the same id (so nobody is congratulated twice), never a second one."""
        return stable_id(f"{customer_id}|{entered_key(self.dimension, self.current, self.direction)}|{self.ordinal}")


def rank(dimension: str, value: str | None) -> int:
    order = RANKS[dimension]
    return order.index(value) if value in order else -1


def direction(dimension: str, previous: str | None, current: str) -> str:
    if previous is None:
        return "initial"
    a, b = rank(dimension, previous), rank(dimension, current)
    return "upgrade" if b > a else "downgrade" if b < a else "lateral"


def _spend_needed(dimension: str, held: str, metrics: Metrics, cutoffs: Cutoffs | None, policy: Policy) -> int | None:
    """How much more net spend keeps ``held``, where a spend line decides the dimension."""
    if dimension == "value_tier":
        line = Policy.minor(policy.value_tier.high if held == "high" else policy.value_tier.medium)
    elif dimension == "vip" and cutoffs and cutoffs.vip_min is not None:
        line = cutoffs.vip_min
    else:
        return None
    return max(0, line - metrics.spend_12m)


def _needed(dimension: str, held: str, metrics: Metrics, cutoffs: Cutoffs | None, policy: Policy) -> str:
    cur = policy.base_currency
    if dimension == "value_tier":
        line = policy.value_tier.high if held == "high" else policy.value_tier.medium
        return f"net spend of at least {line:.2f} {cur} in the trailing {policy.window_days} days"
    if dimension == "vip" and cutoffs and cutoffs.vip_min is not None:
        return f"net spend of at least {money(cutoffs.vip_min)} {cur} in the window"
    if dimension == "abc_class":
        return f"spend back within class {held} of the population"
    return f"stay at {held}"


#: Dimensions that skip the grace period (``True``: all of them).
Immediate = bool | frozenset[str]


def decide(previous: Snapshot, targets: Mapping[str, tuple[str, str]], metrics: Metrics, cutoffs: Cutoffs | None,
           policy: Policy, now: datetime, effective_at: datetime, *, immediate: Immediate = False,
           ) -> tuple[Snapshot, list[Change]]:
    """Apply hysteresis and overrides to ``targets``; return the new snapshot and what changed.

    ``immediate`` skips the grace period: a new policy is a decision, not a dip in spend.
    """
    held: dict[str, str] = {}
    reasons: dict[str, str] = {}
    pending: dict[str, Pending] = {}
    for dim, (target, reason) in targets.items():
        before = previous.held.get(dim)
        grace = timedelta(days=0 if immediate is True or (immediate and dim in immediate)
                          else policy.hysteresis.grace_days)
        if (dim in policy.hysteresis.dimensions and before is not None
                and rank(dim, target) < rank(dim, before)):
            waiting = previous.pending.get(dim)
            below_since = waiting.below_since if waiting and waiting.current == before else now
            due = below_since + grace
            if now < due:
                held[dim] = before
                reasons[dim] = previous.reasons.get(dim, reason)
                pending[dim] = Pending(current=before, pending=target, below_since=below_since, effective_at=due,
                                       needed=_needed(dim, before, metrics, cutoffs, policy),
                                       spend_needed=_spend_needed(dim, before, metrics, cutoffs, policy))
                continue
            reason = f"{reason}; below since {below_since.date().isoformat()}, past the {grace.days}-day grace"
        held[dim] = target
        reasons[dim] = reason
    overrides = {d: o for d, o in previous.overrides.items() if o.active(now)}
    output = dict(held)
    from_override: set[str] = set()
    for dim, ov in overrides.items():
        computed = held.get(dim)
        if ov.mode == "lock" or computed is None or rank(dim, ov.value) > rank(dim, computed):
            output[dim] = ov.value
            from_override.add(dim)
    changes: list[Change] = []
    entered = dict(previous.entered)
    for dim in DIMENSIONS:
        old, new = previous.output.get(dim), output.get(dim)
        if new is None or old == new:
            continue
        by_override = dim in from_override
        reason = (f"manual override ({overrides[dim].mode}) by {overrides[dim].actor}: {overrides[dim].reason}"
                  if by_override else reasons.get(dim, ""))
        waiting = previous.pending.get(dim)
        # A downgrade that waited out its grace takes effect at the planned moment, whoever noticed it.
        when = waiting.effective_at if waiting is not None and dim not in pending and not by_override else effective_at
        way = direction(dim, old, new)
        key = entered_key(dim, new, way)
        entered[key] = entered.get(key, 0) + 1
        regain = _spend_needed(dim, old, metrics, cutoffs, policy) if way == "downgrade" and old else None
        changes.append(Change(dim, old, new, way, reason[:1000], by_override, when, entered[key], regain or None))
    snapshot = Snapshot(held=held, output=output, reasons=reasons, pending=pending, overrides=overrides,
                        entered=entered)
    return snapshot, changes


def with_override(snapshot: Snapshot, dimension: str, override: Override | None) -> Snapshot:
    overrides = dict(snapshot.overrides)
    if override is None:
        overrides.pop(dimension, None)
    else:
        overrides[dimension] = override
    return replace(snapshot, overrides=overrides)


def validate_override_value(dimension: str, value: str) -> None:
    if dimension not in RANKS:
        raise ValueError(f"unknown dimension {dimension!r}")
    if value not in RANKS[dimension]:
        raise ValueError(f"{value!r} is not a value of {dimension}; use one of {', '.join(RANKS[dimension])}")


# --- Time-driven re-evaluation -----------------------------------------------------------------------

def next_evaluation(ledger: Iterable[Entry], metrics: Metrics, snapshot: Snapshot, policy: Policy,
                    now: datetime) -> datetime | None:
    """The earliest moment something may change with no new event: the scheduler's due time."""
    # A purchase or refund leaves the 90-day, previous-90-day and policy windows at these moments;
    # spans ascend, so an entry's first boundary ahead is its earliest. (Runs once per evaluation:
    # no list of every boundary.)
    spans = _window_spans(policy.window_days)
    due: datetime | None = None
    for e in ledger:
        if e.kind == "purchase" or e.kind == "refund":
            for span in spans:
                at = e.time + span
                if at > now:
                    if due is None or at < due:
                        due = at
                    break
    others: list[datetime] = []
    last = metrics.last_purchase_at
    if last is not None:
        rule = policy.lifecycle
        others.append(last + timedelta(days=churn_after_days(metrics, policy) + 1))
        for days in (rule.at_risk_days, rule.churned_days, rule.reactivated_days):
            others.append(last + timedelta(days=days + 1))
    others.extend(p.effective_at for p in snapshot.pending.values())
    others.extend(o.expires_at for o in snapshot.overrides.values() if o.expires_at is not None)
    for at in others:
        if at > now and (due is None or at < due):
            due = at
    return due


@functools.lru_cache(maxsize=8)
def _window_spans(window_days: int) -> tuple[timedelta, ...]:
    return tuple(sorted({timedelta(days=90), timedelta(days=180), timedelta(days=window_days),
                         timedelta(days=2 * window_days)}))


# --- From contract events to ledger entries ------------------------------------------------------------

def _base_minor(policy: Policy, amount: Decimal, currency: str) -> int:
    """``amount`` in minor units of the policy's base currency; refused when the policy has no rate."""
    minor = policy.to_minor(amount, currency)
    if minor is None:
        raise RuleViolation("unknown_currency", f"currency {currency} is not in the conversion table "
                                                f"of policy {policy.version}")
    return minor


def entry_for(event: Any, policy: Policy) -> Entry | None:
    """The ledger line an inbound event adds, None when it says nothing tiering keeps."""
    kind = event.type
    data = event.data
    if kind == "order.purchase.completed":
        minor = _base_minor(policy, data.total_amount, data.currency)
        return Entry(f"p:{data.order_id}", "purchase", event.time, minor, order_id=data.order_id,
                     currency=data.currency)
    if kind == "order.purchase.refunded":
        minor = _base_minor(policy, data.amount, data.currency)
        return Entry(f"r:{data.refund_id}", "refund", event.time, minor, order_id=data.order_id,
                     currency=data.currency)
    if kind == "customer.interaction.recorded":
        if data.kind == "referral":
            return Entry(f"i:{data.interaction_id}", "referral", event.time, score=data.satisfaction)
        if data.satisfaction is not None:
            return Entry(f"i:{data.interaction_id}", "survey", event.time, score=data.satisfaction)
        return None
    if kind.startswith("complaint."):
        # One line per lifecycle event; the latest by event time gives the complaint's status.
        return Entry(f"c:{data.complaint_id}:{event.id}", "complaint", event.time, ref=data.complaint_id,
                     status=data.status, score=data.feedback_score)
    if kind == "customer.profile.changed" and data.status in ("prospect", "active"):
        return Entry("registered", "registered", event.time)
    return None
