"""Every event of the public contract as a frozen pydantic model.

An event is a CloudEvents 1.0 envelope whose ``type`` is a literal and whose ``data`` is a model of
its own. Inbound events are what upstream systems publish; outbound events are what the services
publish for downstream consumers. The envelope is in ``base``, the shared value sets in ``values``,
and each domain's events in a module of its own; this package is where they are imported from.
"""

from __future__ import annotations

from .base import (
    SCHEMA_VERSION,
    SPEC_VERSION,
    CloudEvent,
    Model,
)
from .values import (
    DIMENSIONS,
    Birthday,
    ComplaintCategory,
    ComplaintChannel,
    Complexity,
    ContactChannel,
    Country,
    Dimension,
    Direction,
    EscalationRung,
    Industry,
    InteractionKind,
    Locale,
    Needs,
    Phone,
    Region,
    RelationshipSince,
    SalesChannel,
    Severity,
    StaffAlertKind,
    StaffId,
    StaffRole,
    StaffWebhook,
    Tag,
    TeamName,
    Timezone,
)
from .orders import (
    LineItem,
    PurchaseCompleted,
    PurchaseCompletedData,
    PurchaseRefunded,
    PurchaseRefundedData,
)
from .customer import (
    Consents,
    CustomerErased,
    CustomerErasedData,
    CustomerProfile,
    CustomerProfileChanged,
    CustomerProfileData,
    CustomerRegistered,
    CustomerUpdated,
    InteractionData,
    InteractionRecorded,
)
from .tiering import (
    BaseSpend,
    ClassificationData,
    CustomerClassification,
    CustomerTierChanged,
    PendingDowngrade,
    RfmScores,
    TierChangedData,
    TierMetrics,
)
from .complaints import (
    COMPLAINT_EVENTS,
    AccountManagerChanged,
    AccountManagerChangedData,
    ComplaintAcknowledged,
    ComplaintAssigned,
    ComplaintClosed,
    ComplaintEscalated,
    ComplaintEvent,
    ComplaintEventData,
    ComplaintFeedbackReceived,
    ComplaintOpened,
    ComplaintReopened,
    ComplaintResolved,
    ComplaintSlaBreached,
    ComplaintSlaWarning,
    ComplaintStaffAlert,
    ComplaintStatus,
    ComplaintSubmitted,
    ComplaintSubmittedData,
    Priority,
    StaffAlert,
    StaffAlertData,
)
from .notifications import (
    NotificationData,
    NotificationFailed,
    NotificationSent,
    NotificationSuppressed,
    ReturnVisitDue,
    ReturnVisitDueData,
)

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

__all__ = [
    "COMPLAINT_EVENTS", "DIMENSIONS", "EVENT_TYPES", "INBOUND_EVENTS", "OUTBOUND_EVENTS", "SCHEMA_VERSION",
    "SPEC_VERSION", "AccountManagerChanged", "AccountManagerChangedData", "BaseSpend", "Birthday",
    "ClassificationData", "CloudEvent", "ComplaintAcknowledged", "ComplaintAssigned", "ComplaintCategory",
    "ComplaintChannel", "ComplaintClosed", "ComplaintEscalated", "ComplaintEvent", "ComplaintEventData",
    "ComplaintFeedbackReceived", "ComplaintOpened", "ComplaintReopened", "ComplaintResolved",
    "ComplaintSlaBreached", "ComplaintSlaWarning", "ComplaintStaffAlert", "ComplaintStatus", "ComplaintSubmitted",
    "ComplaintSubmittedData", "Complexity", "Consents", "ContactChannel", "Country", "CustomerClassification",
    "CustomerErased", "CustomerErasedData", "CustomerProfile", "CustomerProfileChanged", "CustomerProfileData",
    "CustomerRegistered", "CustomerTierChanged", "CustomerUpdated", "Dimension", "Direction", "EscalationRung",
    "Industry", "InteractionData", "InteractionKind", "InteractionRecorded", "LineItem", "Locale", "Model",
    "Needs", "NotificationData", "NotificationFailed", "NotificationSent", "NotificationSuppressed",
    "PendingDowngrade", "Phone", "Priority", "PurchaseCompleted", "PurchaseCompletedData", "PurchaseRefunded",
    "PurchaseRefundedData", "Region", "RelationshipSince", "ReturnVisitDue", "ReturnVisitDueData", "RfmScores",
    "SalesChannel", "Severity", "StaffAlert", "StaffAlertData", "StaffAlertKind", "StaffId", "StaffRole",
    "StaffWebhook", "Tag", "TeamName", "TierChangedData", "TierMetrics", "Timezone",
]
