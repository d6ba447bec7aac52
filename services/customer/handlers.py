"""Kafka subscribers of the customer service: validate, call the domain, persist, publish."""

from __future__ import annotations

from faststream.kafka import KafkaRouter

from shared.contract.events import (
    ComplaintEvent,
    CustomerClassification,
    CustomerRegistered,
    CustomerUpdated,
    InteractionRecorded,
    NotificationFailed,
    NotificationSent,
    NotificationSuppressed,
    PurchaseCompleted,
    PurchaseRefunded,
)
from shared.contract.topics import (
    CRM_COMPLAINTS,
    CRM_CUSTOMER_INTAKE,
    CRM_CUSTOMER_TIERS,
    CRM_INTERACTIONS,
    CRM_NOTIFICATIONS,
    ORDERS_PURCHASES,
)
from shared.kafka import Rejected, subscriber_options

from .activity import Activity
from .records import CustomerRecords, NotFound
from .settings import CustomerSettings



def build_router(settings: CustomerSettings, records: CustomerRecords, activity: Activity) -> KafkaRouter:
    router = KafkaRouter()

    @router.subscriber(CRM_CUSTOMER_INTAKE, **subscriber_options(settings, CRM_CUSTOMER_INTAKE), title="customer-intake",
                       description="Registrations and profile updates from upstream become the profile; each "
                                   "change is published on crm.customers.v1. An update of an unknown customer "
                                   "is dead-lettered with x-error=unknown_customer.")
    async def on_intake(event: CustomerRegistered | CustomerUpdated) -> None:
        try:
            await activity.intake(event)
        except NotFound:
            raise Rejected("unknown_customer", f"no customer {event.subject} to update") from None

    @router.subscriber(ORDERS_PURCHASES, **subscriber_options(settings, ORDERS_PURCHASES), title="purchases",
                       description="Purchases and refunds join the timeline (once per order_id / refund_id); "
                                   "a purchase of an unknown customer creates a prospect marked by its source.")
    async def on_purchase(event: PurchaseCompleted | PurchaseRefunded) -> None:
        await activity.purchase(event)

    @router.subscriber(CRM_INTERACTIONS, **subscriber_options(settings, CRM_INTERACTIONS), title="interactions",
                       description="Interactions join the timeline once per interaction_id; summaries are "
                                   "encrypted at rest.")
    async def on_interaction(event: InteractionRecorded) -> None:
        await activity.interaction(event)

    @router.subscriber(CRM_CUSTOMER_TIERS, **subscriber_options(settings, CRM_CUSTOMER_TIERS), title="classifications",
                       description="The newest classification snapshot is kept for the 360-degree view and "
                                   "list filters; a change of a dimension joins the timeline.")
    async def on_classification(event: CustomerClassification) -> None:
        await activity.classification(event)

    @router.subscriber(CRM_COMPLAINTS, **subscriber_options(settings, CRM_COMPLAINTS), title="complaints",
                       description="Complaint lifecycle events join the timeline and the complaint summary.")
    async def on_complaint(event: ComplaintEvent) -> None:
        await activity.complaint(event)

    @router.subscriber(CRM_NOTIFICATIONS, **subscriber_options(settings, CRM_NOTIFICATIONS), title="notifications",
                       description="Every message sent, failed or suppressed becomes part of the contact record.")
    async def on_notification(event: NotificationSent | NotificationFailed | NotificationSuppressed) -> None:
        await activity.notification(event)

    return router
