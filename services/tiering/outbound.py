"""The events tiering publishes, built as JSON directly from what the rules decided.

Every value comes from the rules and the policy, already checked, and building, validating and
serializing pydantic models for them cost more than evaluating the customers (``to_json`` is
pydantic's encoder, without a model). The unit tests parse what these builders make with the
contract's own parser.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic_core import to_json

from shared.contract import CloudEvent
from shared.contract.events import CustomerClassification, CustomerTierChanged
from shared.kafka import OutboundRecord, trace_headers

from . import domain
from .domain import Change
from .metrics import Cutoffs, Metrics, rfm_scores
from .policy import Policy
from .repository import CustomerState

SOURCE = "carecrm/tiering"


def tier_metrics(policy: Policy, cutoffs: Cutoffs | None, m: Metrics, now: datetime) -> bytes:
    """The metrics as JSON, encoded once for all of the customer's events."""
    scores = rfm_scores(m, cutoffs, now)
    currency, shown = shown_in(policy, m.currency)
    metrics = {
        "currency": currency, "spend_12m": shown(m.spend_12m), "orders_12m": m.orders_12m,
        "first_purchase_at": _time(m.first_purchase_at), "last_purchase_at": _time(m.last_purchase_at),
        "recency_days": m.recency_days(now),
        "rfm": {"r": scores[0], "f": scores[1], "m": scores[2]} if scores else None,
        "spend_90d": shown(m.spend_90d), "spend_prev_90d": shown(m.spend_prev_90d),
        "orders_prev_12m": m.orders_prev_12m, "typical_gap_days": m.typical_gap_days,
        "lifetime_spend": shown(m.lifetime_spend), "lifetime_orders": m.lifetime_orders,
        "referrals": m.referrals, "open_complaints": m.open_complaints,
        "latest_satisfaction": m.latest_satisfaction,
        # What the policy compared: the spend in its base currency.
        "base": {"currency": policy.base_currency, "spend_12m": money(m.spend_12m)}
        if currency != policy.base_currency else None,
    }
    return to_json({k: v for k, v in metrics.items() if v is not None})


def shown_in(policy: Policy, currency: str | None) -> tuple[str, Callable[[int], str]]:
    """The currency a customer's figures are shown in (theirs when they paid in one, else the base
    currency) and how a base amount reads in it, at the policy's fixed rate."""
    rate = policy.rates.get(currency or "")
    if currency is None or rate is None or currency == policy.base_currency:
        return policy.base_currency, money
    return currency, lambda minor: format((Decimal(minor) / 100 / rate).quantize(Decimal("0.01")), "f")


def change_event(policy: Policy, customer_id: str, event_id: str, change: Change, metrics: bytes, bulk: bool,
                 cause: CloudEvent | None, currency: str | None = None) -> OutboundRecord:
    """``currency``: the one the customer paid in, as in the metrics (what ``spend_needed`` is shown in)."""
    effective_at = _time(change.effective_at)
    data: dict[str, Any] = {
        "dimension": change.dimension, "previous": change.previous, "current": change.current,
        "direction": change.direction, "reason": change.reason or change.current,
        "policy_version": policy.version, "effective_at": effective_at,
        "override": change.override, "bulk": bulk,
    }
    if change.spend_needed:
        data["spend_needed"] = shown_in(policy, currency)[1](change.spend_needed)
    return _record(CustomerTierChanged, event_id, customer_id, effective_at, data, metrics, cause)


def snapshot_event(policy: Policy, state: CustomerState, metrics: bytes, now: datetime,
                   cause: CloudEvent | None) -> OutboundRecord:
    s = state.snapshot
    data: dict[str, Any] = {dim: s.output[dim] for dim in domain.RANKS if s.output.get(dim) is not None}
    currency, shown = shown_in(policy, state.metrics.currency)
    data.update({
        "policy_version": policy.version, "updated_at": _time(now),
        "downgrade_pending": {d: {"current": p.current, "pending": p.pending, "below_since": _time(p.below_since),
                                  "effective_at": _time(p.effective_at), "needed": p.needed,
                                  **({"spend_needed": shown(p.spend_needed), "currency": currency}
                                     if p.spend_needed is not None else {})}
                              for d, p in s.pending.items()},
        "overrides": {d: o.value for d, o in s.overrides.items()},
    })
    event_id = domain.stable_id(f"{state.customer_id}|classification|{state.rev}")
    return _record(CustomerClassification, event_id, state.customer_id, _time(now), data, metrics, cause)


def _record(kind: type[CloudEvent], event_id: str, subject: str, time_: str | None, data: dict[str, Any],
            metrics: bytes, cause: CloudEvent | None) -> OutboundRecord:
    envelope = to_json({"specversion": "1.0", "id": event_id, "source": SOURCE,
                        "type": kind.model_fields["type"].default, "subject": subject, "time": time_,
                        "datacontenttype": "application/json", "dataschemaversion": 1})
    # The metrics JSON is shared by the customer's events, so it is spliced in rather than re-encoded.
    value = b"".join((envelope[:-1], b',"data":', to_json(data)[:-1], b',"metrics":', metrics, b"}}"))
    return OutboundRecord(kind.topic, subject.encode(), value, trace_headers(cause))


def money(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole}.{cents:02d}"


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
