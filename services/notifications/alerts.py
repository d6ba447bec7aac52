"""Staff alerts: the member of staff a complaint's escalation, SLA warning or breach concerns, told
by e-mail or webhook.

These are operational messages to staff, not care messages: no customer consent, suppression list,
frequency cap or quiet hours applies, and no customer profile is needed, since the alert carries
whom to reach. Each alert is sent once: its dedupe key is the alert event's id, which the
complaints service derives from the complaint and its revision, so a redelivered or republished
alert finds the record of the first. E-mail goes first, then the webhook; a staff webhook is called
only at a URL under one of the allowed prefixes, since the address comes from an event and the
service must not be steered to post anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from shared.contract.events import ComplaintStaffAlert

from .domain import local_time_text

TEMPLATES = {"escalated": "staff_escalated", "sla_warning": "staff_sla_warning", "sla_breached": "staff_sla_breached"}
#: Fields of a stored alert that reach a person: sealed at rest.
SEALED = ("staff_name", "email", "webhook")


@dataclass(frozen=True)
class StaffMessage:
    """One alert to send, identified by its dedupe key."""

    dedupe_key: str
    source_id: str
    customer_id: str
    complaint_id: str
    staff_id: str
    staff_name: str
    kind: str
    email: str | None
    webhook: str | None
    locale: str | None
    timezone: str | None
    #: What the template says: complaint, priority, rung, reason, target, due time, previous holder.
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def template(self) -> str:
        return TEMPLATES[self.kind]


def message_from(event: ComplaintStaffAlert) -> StaffMessage:
    d, alert = event.data, event.data.alert
    params = {"complaint_id": d.complaint_id, "priority": d.priority, "status": d.status, "team": d.team or "",
              "rung": alert.rung, "on_duty": alert.on_duty, "reason": alert.reason or "",
              "sla_target": d.sla_target or "", "previous_assignee": alert.previous_assignee or "",
              "due_at": alert.due_at.isoformat() if alert.due_at else None}
    return StaffMessage(dedupe_key=f"staff_alert:{event.id}", source_id=event.id, customer_id=event.subject,
                        complaint_id=d.complaint_id, staff_id=alert.staff_id, staff_name=alert.staff_name,
                        kind=alert.kind, email=str(alert.email).lower() if alert.email else None,
                        webhook=alert.webhook, locale=alert.locale, timezone=alert.timezone, params=params)


def channels(message: StaffMessage, webhook_prefixes: Sequence[str]) -> tuple[list[tuple[str, str]], str | None]:
    """The channels to try, in order, each with its address; or none and why."""
    found: list[tuple[str, str]] = []
    if message.email:
        found.append(("email", message.email))
    if message.webhook and any(message.webhook.startswith(p) for p in webhook_prefixes if p):
        found.append(("webhook", message.webhook))
    if found:
        return found, None
    return [], "webhook_not_allowed" if message.webhook else "no_contact"


def context(message: StaffMessage, locale: str, default_timezone: str) -> dict[str, Any]:
    """What the template sees: the due time on the person's own clock, in their language."""
    values = {k: v for k, v in message.params.items() if k != "due_at"}
    due = message.params.get("due_at")
    zone = ZoneInfo(message.timezone or default_timezone)
    values["due_local"] = local_time_text(datetime.fromisoformat(due), zone, locale) if due else ""
    values["name"] = message.staff_name
    return values


def message_doc(message: StaffMessage) -> dict[str, Any]:
    return {"_id": message.dedupe_key, "source_id": message.source_id, "customer_id": message.customer_id,
            "complaint_id": message.complaint_id, "staff_id": message.staff_id, "staff_name": message.staff_name,
            "kind": message.kind, "template": message.template, "email": message.email, "webhook": message.webhook,
            "locale": message.locale, "timezone": message.timezone, "params": dict(message.params)}


def message_from_doc(doc: Mapping[str, Any]) -> StaffMessage:
    return StaffMessage(dedupe_key=doc["_id"], source_id=doc["source_id"], customer_id=doc["customer_id"],
                        complaint_id=doc["complaint_id"], staff_id=doc["staff_id"], staff_name=doc["staff_name"],
                        kind=doc["kind"], email=doc.get("email"), webhook=doc.get("webhook"),
                        locale=doc.get("locale"), timezone=doc.get("timezone"), params=doc.get("params") or {})
