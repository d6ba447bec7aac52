"""The figures the tiering rules read: a customer's ledger (lines from contract events) and the
metrics derived from it, and the population's cut-offs. Pure: no I/O, time comes from the caller."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from statistics import median
from typing import Any, Iterable, Mapping

from .policy import Policy

CLOSED_COMPLAINT = frozenset({"resolved", "closed"})


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
