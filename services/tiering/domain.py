"""What decides a customer's snapshot: hysteresis and overrides turn the target classes and the
previous snapshot into the new snapshot and the list of changes; also whether new cut-offs may move
a customer, and when to look again with no new event. Pure: no I/O, time comes from the caller.

The ledger, metrics and cut-offs are in ``metrics``, the target classes in ``classification``.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Iterable, Mapping, NamedTuple

from shared.contract.events import DIMENSIONS

from .classification import churn_after_days, classify, money
from .metrics import Cutoffs, Entry, Metrics
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
