"""Outbound events of the notifications service: what was sent, failed or suppressed, and the
return visits that fall due to an account manager."""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import Field
from typing_extensions import Annotated

from ..types import AwareTime, Identifier
from .base import CloudEvent, Model
from .values import ContactChannel, StaffId

# --- Outbound: crm.care-tasks.v1 ----------------------------------------------------------------

class ReturnVisitDueData(Model):
    """A managed customer's follow-up falls due: their account manager visits or calls them instead
    of an automated message. ``visit_id`` is the visit's identity (``return_visit:<day>:<customer>``)."""

    visit_id: Identifier
    #: The customer's local day the follow-up cadence falls on.
    due_on: date
    cadence_days: Annotated[int, Field(ge=1, le=3660)]
    #: The account manager as the publisher knew them; the complaints service uses its own record.
    manager_id: StaffId | None = None


class ReturnVisitDue(CloudEvent):
    topic: ClassVar[str] = "crm.care-tasks.v1"
    type: Literal["care.return_visit.due"] = "care.return_visit.due"
    data: ReturnVisitDueData


# --- Outbound: crm.notifications.v1 -------------------------------------------------------------

class NotificationData(Model):
    notification_id: Identifier
    trigger: Annotated[str, Field(min_length=1, max_length=200)]
    channel: ContactChannel | None = None
    template: Annotated[str, Field(max_length=128)]
    locale: Annotated[str, Field(max_length=35)] | None = None
    reason: Annotated[str, Field(max_length=500)] | None = None
    dedupe_key: Annotated[str, Field(max_length=300)] | None = None
    attempts: Annotated[int, Field(ge=0)] = 0
    scheduled_for: AwareTime | None = None


class NotificationSent(CloudEvent):
    topic: ClassVar[str] = "crm.notifications.v1"
    type: Literal["notification.sent"] = "notification.sent"
    data: NotificationData


class NotificationFailed(CloudEvent):
    topic: ClassVar[str] = "crm.notifications.v1"
    type: Literal["notification.failed"] = "notification.failed"
    data: NotificationData


class NotificationSuppressed(CloudEvent):
    topic: ClassVar[str] = "crm.notifications.v1"
    type: Literal["notification.suppressed"] = "notification.suppressed"
    data: NotificationData
