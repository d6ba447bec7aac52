"""Every event of the public contract as a frozen pydantic model.

An event is a CloudEvents 1.0 envelope whose ``type`` is a literal and whose ``data`` is a model of
its own. Inbound events are what upstream systems publish; outbound events are what the services
publish for downstream consumers.
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from typing import Any, ClassVar, Literal, Union
from zoneinfo import available_timezones

import phonenumbers
from pydantic import (
    AfterValidator,
    ConfigDict,
    EmailStr,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from typing_extensions import Annotated

from .types import (
    Amount,
    StaffEmail,
    AwareTime,
    Currency,
    CustomerId,
    EventTime,
    Identifier,
    LongText,
    PositiveAmount,
    ShortText,
    TextModel,
)

SPEC_VERSION = "1.0"
SCHEMA_VERSION = 1
_TRACEPARENT = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


class Model(TextModel):
    """Base of every data model: immutable, unknown fields refused, no NUL in text."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class CloudEvent(Model):
    """The CloudEvents 1.0 structured-mode envelope shared by every event."""

    # Extension attributes other than the ones below are tolerated and dropped.
    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = SPEC_VERSION
    id: Annotated[str, Field(min_length=1, max_length=256)]
    source: Annotated[str, Field(min_length=1, max_length=512)]
    type: str
    subject: CustomerId
    time: EventTime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschemaversion: Literal[1] = SCHEMA_VERSION
    traceparent: Annotated[str, Field(pattern=_TRACEPARENT)] | None = None
    data: Model

    #: The Kafka topic this event type travels on, set on each concrete event.
    topic: ClassVar[str]

    @property
    def customer_id(self) -> str:
        return self.subject


# --- Shared value sets --------------------------------------------------------------------------

SalesChannel = Literal["online", "store", "phone", "app", "other"]
ContactChannel = Literal["email", "sms", "webhook"]
Needs = Literal["custom", "standard", "latent"]
InteractionKind = Literal[
    "inquiry", "consultation", "suggestion", "visit", "call", "email", "chat", "event",
    "referral", "survey_response", "care_message", "return_visit",
]
ComplaintChannel = Literal["phone", "email", "online", "social", "in_person", "app"]
ComplaintCategory = Literal["product_quality", "service_attitude", "delivery", "billing", "price", "other"]
Severity = Literal["low", "normal", "high", "critical"]
Complexity = Literal["standard", "complex"]
Dimension = Literal["value_tier", "abc_class", "vip", "loyalty", "lifecycle", "rfm_segment", "potential"]
DIMENSIONS: tuple[str, ...] = Dimension.__args__  # type: ignore[attr-defined]
Direction = Literal["initial", "upgrade", "downgrade", "lateral"]
StaffRole = Literal["agent", "supervisor", "manager"]
#: The escalation ladder of a complaint, lowest first.
EscalationRung = Literal["handler", "supervisor", "manager"]
StaffAlertKind = Literal["escalated", "sla_warning", "sla_breached"]
StaffId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]
TeamName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]
#: No ``@``: a user part would let ``http://allowed.host:@elsewhere/`` pass a prefix check for another host.
StaffWebhook = Annotated[str, Field(max_length=500, pattern=r"^https?://[^\s@]+$")]


# --- Validators for profile fields --------------------------------------------------------------

@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def _e164(value: str) -> str:
    if not re.fullmatch(r"\+[1-9]\d{6,14}", value):
        raise ValueError("phone must be in E.164 form, e.g. +8613800138000")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("phone is not a valid E.164 number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("phone is not a valid number for its country code")
    return value


def _timezone(value: str) -> str:
    if value not in _timezones():
        raise ValueError(f"unknown IANA time zone {value[:64]!r}")
    return value


def _country(value: str) -> str:
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown ISO 3166-1 alpha-2 country {value[:8]!r}")
    return value


_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|\d{3}))?$")


def _locale(value: str) -> str:
    if not _LOCALE.match(value):
        raise ValueError("locale must be a BCP 47 tag such as zh-CN or en-US")
    return value


def _relationship_since(value: date) -> date:
    if value > date.today():
        raise ValueError("relationship_since is in the future")
    if value.year < 1900:
        raise ValueError("relationship_since is before 1900")
    return value


def _birthday(value: date) -> date:
    if value > date.today():
        raise ValueError("birthday is in the future")
    if value.year < 1900:
        raise ValueError("birthday is before 1900")
    return value


Phone = Annotated[str, Field(max_length=16), AfterValidator(_e164)]
Timezone = Annotated[str, Field(max_length=64), AfterValidator(_timezone)]
Country = Annotated[str, Field(min_length=2, max_length=2), AfterValidator(_country)]
Locale = Annotated[str, Field(max_length=35), AfterValidator(_locale)]
Birthday = Annotated[date, AfterValidator(_birthday)]
Tag = Annotated[str, Field(min_length=1, max_length=64)]
#: A B2B customer's industry and sales region as upstream names them (free text, e.g. ``retail``, ``East China``).
Industry = Annotated[str, Field(min_length=1, max_length=100)]
Region = Annotated[str, Field(min_length=1, max_length=100)]
RelationshipSince = Annotated[date, AfterValidator(_relationship_since)]


class Consents(Model):
    email: bool | None = None
    sms: bool | None = None
    care_messages: bool | None = None
    marketing: bool | None = None


# --- Inbound: orders.purchases.v1 ---------------------------------------------------------------

class LineItem(Model):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    name: ShortText | None = None
    category: Annotated[str, Field(max_length=64)] | None = None
    quantity: Annotated[int, Field(gt=0, le=1_000_000, strict=True)]
    unit_price: Amount

    @field_validator("unit_price")
    @classmethod
    def _not_negative(cls, value: Any) -> Any:
        if value < 0:
            raise ValueError("unit_price must not be negative")
        return value


class PurchaseCompletedData(Model):
    order_id: Identifier
    total_amount: PositiveAmount
    currency: Currency
    channel: SalesChannel = "other"
    store_id: Annotated[str, Field(max_length=64)] | None = None
    items: Annotated[list[LineItem], Field(max_length=500)] | None = None


class PurchaseRefundedData(Model):
    refund_id: Identifier
    order_id: Identifier | None = None
    amount: PositiveAmount
    currency: Currency
    reason: ShortText | None = None


class PurchaseCompleted(CloudEvent):
    topic: ClassVar[str] = "orders.purchases.v1"
    type: Literal["order.purchase.completed"] = "order.purchase.completed"
    data: PurchaseCompletedData


class PurchaseRefunded(CloudEvent):
    topic: ClassVar[str] = "orders.purchases.v1"
    type: Literal["order.purchase.refunded"] = "order.purchase.refunded"
    data: PurchaseRefundedData


# --- Inbound: crm.customer-intake.v1 ------------------------------------------------------------

class CustomerProfileData(Model):
    """Profile fields as upstream sends them; on update every field is optional."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    phone: Phone | None = None
    email: Annotated[EmailStr, Field(max_length=254)] | None = None
    birthday: Birthday | None = None
    locale: Locale | None = None
    timezone: Timezone | None = None
    country: Country | None = None
    address: Annotated[str, Field(max_length=500)] | None = None
    preferred_channel: ContactChannel | None = None
    consents: Consents | None = None
    referred_by: CustomerId | None = None
    needs: Needs | None = None
    tags: Annotated[list[Tag], Field(max_length=50)] | None = None
    industry: Industry | None = None
    region: Region | None = None
    #: When the business relationship began (B2B customers); not in the future.
    relationship_since: RelationshipSince | None = None


class CustomerRegistered(CloudEvent):
    topic: ClassVar[str] = "crm.customer-intake.v1"
    type: Literal["customer.registered"] = "customer.registered"
    data: CustomerProfileData


class CustomerUpdated(CloudEvent):
    topic: ClassVar[str] = "crm.customer-intake.v1"
    type: Literal["customer.updated"] = "customer.updated"
    data: CustomerProfileData


# --- Inbound: crm.interactions.v1 ---------------------------------------------------------------

class InteractionData(Model):
    interaction_id: Identifier
    kind: InteractionKind
    channel: Annotated[str, Field(min_length=1, max_length=32)]
    direction: Literal["inbound", "outbound"]
    summary: LongText | None = None
    satisfaction: Annotated[int, Field(ge=1, le=5, strict=True)] | None = None
    referred_customer_id: CustomerId | None = None
    complaint_id: Identifier | None = None

    @model_validator(mode="after")
    def _referral_names_customer(self) -> InteractionData:
        if self.kind == "referral" and not self.referred_customer_id:
            raise ValueError("referred_customer_id is required for a referral")
        return self


class InteractionRecorded(CloudEvent):
    topic: ClassVar[str] = "crm.interactions.v1"
    type: Literal["customer.interaction.recorded"] = "customer.interaction.recorded"
    data: InteractionData


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


# --- Outbound: crm.customers.v1 -----------------------------------------------------------------

class CustomerProfile(CustomerProfileData):
    """The current profile as the customer service publishes it (compacted topic)."""

    status: Literal["prospect", "active", "erased"] = "active"
    source: Annotated[str, Field(max_length=128)] | None = None
    version: Annotated[int, Field(ge=1)] = 1
    created_at: AwareTime | None = None
    updated_at: AwareTime | None = None


class CustomerProfileChanged(CloudEvent):
    topic: ClassVar[str] = "crm.customers.v1"
    type: Literal["customer.profile.changed"] = "customer.profile.changed"
    data: CustomerProfile


class CustomerErasedData(Model):
    erased_at: AwareTime
    reason: ShortText | None = None


class CustomerErased(CloudEvent):
    topic: ClassVar[str] = "crm.customers.v1"
    type: Literal["customer.erased"] = "customer.erased"
    data: CustomerErasedData


# --- Outbound: crm.tier-changes.v1 and crm.customer-tiers.v1 ------------------------------------

class RfmScores(Model):
    r: Annotated[int, Field(ge=1, le=5)]
    f: Annotated[int, Field(ge=1, le=5)]
    m: Annotated[int, Field(ge=1, le=5)]


class BaseSpend(Model):
    currency: Currency
    spend_12m: Amount


class TierMetrics(Model):
    """The figures a classification used. Amounts are in ``currency``: the one the customer paid
    in, converted from the policy's base currency at its fixed rates, or the base currency when they
    paid in several; ``base`` then holds the spend the policy compared, in its base currency."""

    currency: Currency
    spend_12m: Amount
    orders_12m: Annotated[int, Field(ge=0)]
    first_purchase_at: AwareTime | None = None
    last_purchase_at: AwareTime | None = None
    recency_days: Annotated[int, Field(ge=0)] | None = None
    rfm: RfmScores | None = None
    spend_90d: Amount | None = None
    spend_prev_90d: Amount | None = None
    orders_prev_12m: Annotated[int, Field(ge=0)] | None = None
    typical_gap_days: float | None = None
    lifetime_spend: Amount | None = None
    lifetime_orders: Annotated[int, Field(ge=0)] | None = None
    referrals: Annotated[int, Field(ge=0)] | None = None
    open_complaints: Annotated[int, Field(ge=0)] | None = None
    latest_satisfaction: Annotated[int, Field(ge=1, le=5)] | None = None
    base: BaseSpend | None = None


class TierChangedData(Model):
    dimension: Dimension
    previous: str | None
    current: str
    direction: Direction
    reason: Annotated[str, Field(max_length=1000)]
    policy_version: Annotated[str, Field(min_length=1, max_length=64)]
    effective_at: AwareTime
    metrics: TierMetrics
    override: bool = False
    #: True for a reclassification under a new policy or a population refresh run in bulk:
    #: downstream systems record it but send the customer nothing.
    bulk: bool = False
    #: After a downgrade where a spend line decides (value tier, VIP): the net spend within the
    #: window that brings ``previous`` back, in ``metrics.currency``.
    spend_needed: Amount | None = None

    @model_serializer(mode="wrap")
    def _previous_always_present(self, handler: SerializerFunctionWrapHandler):  # noqa: ANN202 - keeps the schema
        # Events are serialized without their null fields, but the contract has ``previous`` as a
        # required key that is null on the first classification.
        data = handler(self)
        if isinstance(data, dict):
            data.setdefault("previous", None)
        return data


class CustomerTierChanged(CloudEvent):
    topic: ClassVar[str] = "crm.tier-changes.v1"
    type: Literal["customer.tier.changed"] = "customer.tier.changed"
    data: TierChangedData


class PendingDowngrade(Model):
    current: str
    pending: str
    below_since: AwareTime
    effective_at: AwareTime
    needed: Annotated[str, Field(max_length=500)]
    #: Net spend still missing to keep ``current`` by ``effective_at``, where a spend line decides it.
    spend_needed: Amount | None = None
    currency: Currency | None = None


class ClassificationData(Model):
    value_tier: str | None = None
    abc_class: str | None = None
    vip: str | None = None
    loyalty: str | None = None
    lifecycle: str | None = None
    rfm_segment: str | None = None
    potential: str | None = None
    metrics: TierMetrics
    policy_version: Annotated[str, Field(min_length=1, max_length=64)]
    updated_at: AwareTime
    downgrade_pending: dict[Dimension, PendingDowngrade] = Field(default_factory=dict)
    overrides: dict[Dimension, str] = Field(default_factory=dict)


class CustomerClassification(CloudEvent):
    topic: ClassVar[str] = "crm.customer-tiers.v1"
    type: Literal["customer.classification"] = "customer.classification"
    data: ClassificationData


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


INBOUND_EVENTS: tuple[type[CloudEvent], ...] = (
    PurchaseCompleted, PurchaseRefunded, CustomerRegistered, CustomerUpdated, InteractionRecorded,
    ComplaintSubmitted,
)
OUTBOUND_EVENTS: tuple[type[CloudEvent], ...] = (
    CustomerProfileChanged, CustomerErased, CustomerTierChanged, CustomerClassification,
    *COMPLAINT_EVENTS, NotificationSent, NotificationFailed, NotificationSuppressed, AccountManagerChanged,
    ReturnVisitDue,
)
#: Every event type of the contract by its ``type``.
EVENT_TYPES: dict[str, type[CloudEvent]] = {
    cls.model_fields["type"].default: cls for cls in (*INBOUND_EVENTS, *OUTBOUND_EVENTS)
}
