"""Pure rules of the general satisfaction surveys: no I/O, time comes from the caller.

Two kinds ask how satisfied a customer is beyond a complaint: a periodic survey by tier (once per
period of ``survey_every_days``) and a survey a while after a sample of purchases. Both are care
messages: they go through the same policy pipeline as every other (consent, suppression list, quiet
hours, frequency cap) and their links name no complaint. Choices are deterministic (a hash of the
order id or the customer id), so a replay or a repeated daily run asks for the same messages under
the same dedupe keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date, datetime, timedelta

from shared.contract import PurchaseCompleted, PurchaseRefunded

from .domain import Profile, Request

PURCHASE = "purchase_survey"
PERIODIC = "satisfaction_survey"


def unit(*parts: object) -> float:
    """A stable number in [0, 1) for ``parts``: the same on every run and every machine."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def purchase_sampled(order_id: str, share: float) -> bool:
    """Whether the purchase is in the surveyed sample: ``share`` of all order ids, chosen by the id."""
    return unit("purchase_survey", order_id) < share


def purchase_key(order_id: str, customer_id: str) -> str:
    return f"{PURCHASE}:{order_id}:{customer_id}"


def purchase_request(event: PurchaseCompleted, *, share: float, delay: timedelta, now: datetime,
                     max_age: timedelta) -> Request | None:
    """The survey a sampled purchase asks for, ``delay`` after it; none for a purchase read long after
    it was made (a new consumer reading the topic from the start surveys no old purchases)."""
    order_id = event.data.order_id
    if not purchase_sampled(order_id, share) or now - event.time > max_age:
        return None
    return Request(event.subject, "survey", PURCHASE, PURCHASE, purchase_key(order_id, event.subject), event.id,
                   {"order_id": order_id, "survey": f"purchase:{order_id}"}, not_before=event.time + delay)


def refunded_survey(event: PurchaseRefunded) -> str | None:
    """The dedupe key of the purchase survey a refund withdraws: a customer who returned the order
    is not asked how they liked it (a refund naming no order withdraws nothing)."""
    order_id = event.data.order_id
    return purchase_key(order_id, event.subject) if order_id else None


def cadence(profile: Profile, every: Mapping[str, int]) -> int | None:
    """The survey cadence in days of the customer's tier (VIP first, then the value tier)."""
    days = every.get("vip") if profile.vip == "vip" else None
    return days or (every.get(profile.value_tier) if profile.value_tier else None)


def periodic_due(profile: Profile, day: date, every: Mapping[str, int]) -> tuple[int, int] | None:
    """``(cadence, period)`` when the customer's periodic survey is due on ``day``.

    Periods of ``cadence`` days are counted from the customer's start; the survey goes on the day of
    the period the customer's id chooses (customers are spread over the period, and rarely meet
    their follow-up on the same day), from the second period on: a new customer is not asked yet.
    """
    days = cadence(profile, every)
    if not days or profile.since is None:
        return None
    elapsed = (day - profile.since).days
    period, offset = divmod(elapsed, days)
    if period < 1 or offset != int(unit("satisfaction_survey", profile.customer_id) * days):
        return None
    return days, period


def periodic_requests(profile: Profile, day: date, *, every: Mapping[str, int], run_id: str) -> list[Request]:
    """The periodic survey due for one customer on their local ``day``, keyed by its period: a run
    repeated, or any other day of the period, asks for nothing new."""
    due = periodic_due(profile, day, every)
    if due is None:
        return []
    days, period = due
    cid = profile.customer_id
    return [Request(cid, "survey", PERIODIC, PERIODIC, f"{PERIODIC}:{days}:{period}:{cid}", run_id,
                    {"cadence_days": days, "survey": f"satisfaction:{days}:{period}"})]
