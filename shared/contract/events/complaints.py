"""Complaint events: the intake upstream publishes, the lifecycle, staff alerts and account manager
changes the complaints service publishes."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Union

from pydantic import Field, model_validator
from typing_extensions import Annotated

from ..types import AwareTime, Identifier, StaffEmail
from .base import CloudEvent, Model
from .values import (
    ComplaintCategory,
    ComplaintChannel,
    Complexity,
    EscalationRung,
    Locale,
    Severity,
    StaffAlertKind,
    StaffId,
    StaffRole,
    StaffWebhook,
    TeamName,
    Timezone,
)

# --- Inbound: crm.complaint-intake.v1 -----------------------------------------------------------

class ComplaintSubmittedData(Model):
    complaint_id: Identifier | None = None
    channel: ComplaintChannel
    category: ComplaintCategory
    severity: Severity = "normal"
    complexity: Complexity = "standard"
    subject: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=5000)] = ""
    order_id: Identifier | None = None


class ComplaintSubmitted(CloudEvent):
    topic: ClassVar[str] = "crm.complaint-intake.v1"
    type: Literal["complaint.submitted"] = "complaint.submitted"
    data: ComplaintSubmittedData


# --- Outbound: crm.complaints.v1 ----------------------------------------------------------------

ComplaintStatus = Literal[
    "received", "acknowledged", "investigating", "waiting_on_customer", "waiting_on_third_party",
    "resolved", "closed",
]
Priority = Literal["p1", "p2", "p3", "p4"]


class ComplaintEventData(Model):
    complaint_id: Identifier
    status: ComplaintStatus
    priority: Priority
    category: ComplaintCategory | None = None
    channel: ComplaintChannel | None = None
    severity: Severity | None = None
    complexity: Complexity | None = None
    customer_tier: str | None = None
    first_response_due_at: AwareTime | None = None
    update_due_at: AwareTime | None = None
    resolution_due_at: AwareTime | None = None
    escalation_level: Annotated[int, Field(ge=0, le=10)] = 0
    assignee: Annotated[str, Field(max_length=128)] | None = None
    #: The team whose queue holds the complaint (the complaints service's staff directory).
    team: TeamName | None = None
    sla_policy: Annotated[str, Field(max_length=128)] | None = None
    sla_target: Literal["first_response", "update", "resolution"] | None = None
    feedback_score: Annotated[int, Field(ge=1, le=5)] | None = None
    linked_complaint_id: Identifier | None = None
    changes: dict[str, Any] = Field(default_factory=dict)


class StaffAlert(Model):
    """Who is told about a complaint, why, and where to reach them. Staff contacts are work
    addresses from the complaints service's staff directory: consumers deliver to them and never
    log or copy them."""

    kind: StaffAlertKind
    staff_id: StaffId
    staff_name: Annotated[str, Field(min_length=1, max_length=200)]
    role: StaffRole
    #: The rung of the escalation ladder the person stands on for this complaint.
    rung: EscalationRung
    #: False when nobody on the rung was on duty: the rung's first person is told all the same.
    on_duty: bool
    email: StaffEmail | None = None
    webhook: StaffWebhook | None = None
    locale: Locale | None = None
    timezone: Timezone | None = None
    #: What led to the alert, e.g. ``first_response_breached``, ``low_satisfaction``.
    reason: Annotated[str, Field(max_length=64, pattern=r"^[a-z0-9_]+$")] | None = None
    previous_assignee: Annotated[str, Field(max_length=128)] | None = None
    #: The due time of the SLA target at issue, if one is.
    due_at: AwareTime | None = None

    @model_validator(mode="after")
    def _reachable(self) -> StaffAlert:
        if not self.email and not self.webhook:
            raise ValueError("a staff alert needs an email or a webhook to reach its recipient")
        return self


class StaffAlertData(ComplaintEventData):
    alert: StaffAlert


class ComplaintStaffAlert(CloudEvent):
    """``complaint.staff_alert`` on crm.complaints.v1: the complaint as other lifecycle events carry
    it, and the member of staff to alert."""

    topic: ClassVar[str] = "crm.complaints.v1"
    type: Literal["complaint.staff_alert"] = "complaint.staff_alert"
    data: StaffAlertData


def _complaint_event(name: str) -> type[CloudEvent]:
    event_type = f"complaint.{name}"
    cls = type(
        "Complaint" + "".join(part.capitalize() for part in name.split("_")),
        (CloudEvent,),
        {
            "__module__": __name__,
            "__annotations__": {"type": Literal[event_type], "data": ComplaintEventData, "topic": ClassVar[str]},
            "type": event_type,
            "topic": "crm.complaints.v1",
            "__doc__": f"``{event_type}`` on crm.complaints.v1.",
        },
    )
    return cls


ComplaintOpened = _complaint_event("opened")
ComplaintAcknowledged = _complaint_event("acknowledged")
ComplaintAssigned = _complaint_event("assigned")
ComplaintEscalated = _complaint_event("escalated")
ComplaintSlaWarning = _complaint_event("sla_warning")
ComplaintSlaBreached = _complaint_event("sla_breached")
ComplaintResolved = _complaint_event("resolved")
ComplaintClosed = _complaint_event("closed")
ComplaintReopened = _complaint_event("reopened")
ComplaintFeedbackReceived = _complaint_event("feedback_received")
COMPLAINT_EVENTS: tuple[type[CloudEvent], ...] = (
    ComplaintOpened, ComplaintAcknowledged, ComplaintAssigned, ComplaintEscalated, ComplaintSlaWarning,
    ComplaintSlaBreached, ComplaintResolved, ComplaintClosed, ComplaintReopened, ComplaintFeedbackReceived,
    ComplaintStaffAlert,
)
#: Any complaint lifecycle event, for the annotation of a ``crm.complaints.v1`` subscriber.
ComplaintEvent = Union[COMPLAINT_EVENTS]  # type: ignore[valid-type]


# --- Outbound: crm.account-managers.v1 ----------------------------------------------------------

class AccountManagerChangedData(Model):
    """Who looks after a customer now. The complaints service owns the assignment (its staff
    directory names the account managers); each change has a revision of its own, one higher than
    the last, so a consumer keeps the highest it has read."""

    #: None: the customer has no account manager any more.
    manager_id: StaffId | None = None
    manager_name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    previous_manager_id: StaffId | None = None
    #: Why: a rule's reason (``vip``, ``custom_needs``) or what the person who changed it wrote.
    reason: Annotated[str, Field(min_length=1, max_length=200)]
    #: Who: ``rule`` for the assignment rule, else the name of whoever changed it.
    actor: Annotated[str, Field(min_length=1, max_length=128)]
    changed_at: AwareTime
    revision: Annotated[int, Field(ge=1)]


class AccountManagerChanged(CloudEvent):
    topic: ClassVar[str] = "crm.account-managers.v1"
    type: Literal["customer.account_manager.changed"] = "customer.account_manager.changed"
    data: AccountManagerChangedData
