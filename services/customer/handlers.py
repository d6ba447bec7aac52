"""Kafka subscribers of the customer service: validate, call the domain, persist, publish."""

from __future__ import annotations

from typing import Union

from faststream.kafka import KafkaRouter

from shared.batch import ForgetOnRebalance
from shared.contract import CloudEvent
from shared.contract.events import (
    AccountManagerChanged,
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
    CRM_ACCOUNT_MANAGERS,
    CRM_COMPLAINTS,
    CRM_CUSTOMER_INTAKE,
    CRM_CUSTOMER_TIERS,
    CRM_INTERACTIONS,
    CRM_NOTIFICATIONS,
    ORDERS_PURCHASES,
)
from shared.kafka import DeadLetterMiddleware, Rejected, batch_options, dead_letter_event

from .activity import Activity
from .settings import CustomerSettings


def build_router(settings: CustomerSettings, activity: Activity, dead_letters: DeadLetterMiddleware) -> KafkaRouter:
    """Every input is read in batches, committed once the whole batch is applied (a batch read again
    is applied again, to the same effect); an event the service rejects goes to the DLQ on its own
    and the rest of its batch is applied."""
    router = KafkaRouter()

    async def reject(event: CloudEvent, exc: Rejected) -> None:
        await dead_letter_event(dead_letters, event, exc)

    @router.subscriber(CRM_CUSTOMER_INTAKE, **batch_options(settings, CRM_CUSTOMER_INTAKE), title="customer-intake",
                       description="Registrations and profile updates from upstream become the profile; each "
                                   "change is published on crm.customers.v1. An update of an unknown customer "
                                   "is dead-lettered with x-error=unknown_customer.")
    async def on_intake(events: list[Union[CustomerRegistered, CustomerUpdated]]) -> None:
        await activity.intakes(events, reject)

    @router.subscriber(ORDERS_PURCHASES, **batch_options(settings, ORDERS_PURCHASES), title="purchases",
                       description="Purchases and refunds join the timeline (once per order_id / refund_id); "
                                   "a purchase of an unknown customer creates a prospect marked by its source.")
    async def on_purchase(events: list[Union[PurchaseCompleted, PurchaseRefunded]]) -> None:
        await activity.purchases(events, reject)

    @router.subscriber(CRM_INTERACTIONS, **batch_options(settings, CRM_INTERACTIONS), title="interactions",
                       description="Interactions join the timeline once per interaction_id; summaries are "
                                   "encrypted at rest.")
    async def on_interaction(events: list[InteractionRecorded]) -> None:
        await activity.interactions(events, reject)

    @router.subscriber(CRM_CUSTOMER_TIERS, **batch_options(settings, CRM_CUSTOMER_TIERS,
                                                           listener=ForgetOnRebalance(activity.known_classifications)),
                       title="classifications",
                       description="The newest classification snapshot is kept for the 360-degree view and "
                                   "list filters; a change of a dimension joins the timeline.")
    async def on_classification(events: list[CustomerClassification]) -> None:
        await activity.classifications(events, reject)

    @router.subscriber(CRM_COMPLAINTS, **batch_options(settings, CRM_COMPLAINTS), title="complaints",
                       description="Complaint lifecycle events join the timeline and the complaint summary.")
    async def on_complaint(events: list[ComplaintEvent]) -> None:
        await activity.complaints(events, reject)

    @router.subscriber(CRM_NOTIFICATIONS, **batch_options(settings, CRM_NOTIFICATIONS), title="notifications",
                       description="Every message sent, failed or suppressed becomes part of the contact record.")
    async def on_notification(events: list[Union[NotificationSent, NotificationFailed, NotificationSuppressed]]
                              ) -> None:
        await activity.notifications(events, reject)

    @router.subscriber(CRM_ACCOUNT_MANAGERS, **batch_options(settings, CRM_ACCOUNT_MANAGERS), title="account managers",
                       description="The customer's account manager (the newest revision) for the 360-degree view.")
    async def on_account_manager(events: list[AccountManagerChanged]) -> None:
        await activity.account_managers(events, reject)

    return router
