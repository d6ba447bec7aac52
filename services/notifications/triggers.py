"""What each event asks to send: pure functions from a contract event to the requests it makes.

Each request carries the dedupe key that identifies the message (the transition, the complaint's
step, the customer welcomed or referred), so a redelivered or replayed event asks for the same one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.contract import (
    CloudEvent,
    ComplaintOpened,
    ComplaintResolved,
    ComplaintSlaBreached,
    CustomerClassification,
    CustomerProfileChanged,
    CustomerTierChanged,
    InteractionRecorded,
)

from .domain import Request


def tier_request(event: CustomerTierChanged) -> Request | None:
    """The message a tier change asks for, if any; bulk changes send nothing."""
    d = event.data
    if d.bulk:
        return None
    kind: str | None = None
    if d.dimension == "vip" and d.current == "vip" and d.direction in ("upgrade", "initial"):
        kind = "vip_welcome"
    elif d.dimension == "value_tier" and d.direction == "upgrade":
        kind = "tier_upgrade"
    elif d.dimension in ("value_tier", "vip") and d.direction == "downgrade":
        kind = "tier_downgrade"
    elif d.dimension == "loyalty" and d.current == "churn_risk" and d.previous != "churn_risk":
        kind = "win_back"
    elif d.dimension == "lifecycle" and d.current == "reactivated" and d.previous != "reactivated":
        kind = "welcome_back"
    if kind is None:
        return None
    # The event id is the transition's identity (which arrival at which tier), not the moment it was
    # noticed: a tiering restart that notices it again at another moment repeats the id.
    key = f"{kind}:{d.dimension}:{d.current}:{event.id}:{event.subject}"
    # What brings the previous tier back, in the customer's currency: never the rule's own reason,
    # which is written for staff in the policy's base currency.
    regain = {"amount": format(d.spend_needed, "f"), "currency": d.metrics.currency} if d.spend_needed else {}
    return Request(customer_id=event.subject, family="tier", trigger=kind, template=kind, dedupe_key=key,
                   source_id=event.id, params={"tier": d.current, "previous": d.previous or "", **regain})


def complaint_requests(event: CloudEvent, *, survey_delay: timedelta) -> list[Request]:
    """Acknowledgement on opening, apology on a breach, resolution notice and a later survey."""
    d = event.data
    cid, subject = d.complaint_id, event.subject  # type: ignore[attr-defined]
    base = {"complaint_id": cid}
    if isinstance(event, ComplaintOpened):
        due = d.first_response_due_at or d.resolution_due_at  # type: ignore[attr-defined]
        return [Request(subject, "complaint", "complaint_acknowledged", "complaint_acknowledged",
                        f"complaint_acknowledged:{cid}:{subject}", event.id,
                        {**base, "due_at": due.isoformat() if due else None})]
    if isinstance(event, ComplaintSlaBreached):
        target = d.sla_target or "resolution"  # type: ignore[attr-defined]
        return [Request(subject, "complaint", "complaint_breached", "complaint_apology",
                        f"complaint_breached:{cid}:{target}:{subject}", event.id, {**base, "sla_target": target})]
    if isinstance(event, ComplaintResolved):
        resolved = event.time.astimezone(UTC)
        return [
            Request(subject, "complaint", "complaint_resolved", "complaint_resolved",
                    f"complaint_resolved:{cid}:{resolved.isoformat()}:{subject}", event.id, base),
            Request(subject, "complaint", "complaint_survey", "complaint_survey",
                    f"complaint_survey:{cid}:{subject}", event.id, base, not_before=resolved + survey_delay),
        ]
    return []


def welcome_request(event: CustomerProfileChanged, *, now: datetime, max_age: timedelta) -> Request | None:
    """A welcome for a newly registered customer; not for old profiles read again from the start."""
    p = event.data
    created = p.created_at or event.time
    # Also too far ahead of the clock: a replay judged on old time must not welcome later sign-ups.
    if p.status != "active" or p.version != 1 or abs(now - created) > max_age:
        return None
    return Request(event.subject, "welcome", "welcome", "welcome", f"welcome:{event.subject}", event.id)


def grace_warning_request(event: CustomerClassification, *, now: datetime) -> Request | None:
    """While a member tier waits out its grace period below its line: once per grace period, what
    to spend by when to keep it (not once the moment has passed, e.g. a snapshot read again late)."""
    pending = event.data.downgrade_pending.get("value_tier")
    if pending is None or pending.spend_needed is None or not pending.spend_needed > 0 or now >= pending.effective_at:
        return None
    key = f"tier_grace_warning:value_tier:{pending.current}:{pending.below_since.isoformat()}:{event.subject}"
    return Request(event.subject, "tier", "tier_grace_warning", "tier_grace_warning", key, event.id,
                   {"tier": pending.current, "amount": format(pending.spend_needed, "f"),
                    "currency": pending.currency or "", "keep_by_at": pending.effective_at.isoformat()})


def referral_request(event: InteractionRecorded) -> Request | None:
    """A thank-you to the referrer, once per customer they brought (a referral told twice, or by two
    systems, or also as ``referred_by`` on the new customer's registration, thanks once)."""
    referred = event.data.referred_customer_id
    if event.data.kind != "referral" or not referred:
        return None
    return _thanks(event.subject, referred, event.id)


def referred_request(event: CustomerProfileChanged, *, now: datetime, max_age: timedelta) -> Request | None:
    """The referrer named by a profile's ``referred_by``; not for old profiles read again from the start."""
    referrer = event.data.referred_by
    if referrer is None or referrer == event.subject or abs(now - event.time) > max_age:
        return None
    return _thanks(referrer, event.subject, event.id)


def _thanks(referrer: str, referred: str, source_id: str) -> Request:
    return Request(referrer, "referral", "referral_thanks", "referral_thanks", f"referral_thanks:{referred}:{referrer}",
                   source_id)
