"""Kafka subscribers of the notifications service: validate, call the domain, persist, publish."""

from __future__ import annotations

from datetime import timedelta

from faststream.kafka import KafkaRouter

from shared.clock import Clock
from shared.contract import (
    ComplaintEvent,
    ComplaintReopened,
    CustomerErased,
    CustomerProfileChanged,
    CustomerTierChanged,
    NotificationSent,
)
from shared.contract.topics import CRM_COMPLAINTS, CRM_CUSTOMERS, CRM_NOTIFICATIONS, CRM_TIER_CHANGES
from shared.kafka import subscriber_options

from . import domain
from .notifier import Notifier
from .repository import Repository
from .settings import NotificationsSettings


SUBSCRIBED = (CRM_CUSTOMERS, CRM_TIER_CHANGES, CRM_COMPLAINTS)


def build_router(settings: NotificationsSettings, repo: Repository, notifier: Notifier, clock: Clock) -> KafkaRouter:
    router = KafkaRouter()
    notifier.publisher = router.publisher(
        CRM_NOTIFICATIONS, title="crm.notifications.v1:publish",
        description="The outcome of every message: notification.sent, notification.failed, or "
                    "notification.suppressed with its reason (no_consent, suppression_list, frequency_cap, "
                    "quiet_hours_deferred with scheduled_for, duplicate, no_contact).",
        schema=NotificationSent,
    )

    welcome_age = timedelta(days=settings.welcome_max_age_days)
    survey_delay = timedelta(hours=settings.survey_delay_hours)

    @router.subscriber(CRM_CUSTOMERS, **subscriber_options(settings, CRM_CUSTOMERS),
                       title="crm.customers.v1:notifications",
                       description="Keeps this service's copy of contacts, locale, time zone, country, consents "
                                   "and birthday; welcomes a new registration; an erasure removes the copy.")
    async def on_customer(event: CustomerProfileChanged | CustomerErased) -> None:
        if isinstance(event, CustomerErased):
            await repo.erase(event.subject)
            return
        previous = await repo.profile(event.subject)
        profile = domain.profile_from_event(event, previous)
        await repo.save_profile(profile, profile.timezone or settings.default_timezone)
        welcome = domain.welcome_request(event, now=clock.now(), max_age=welcome_age)
        await notifier.submit([welcome] if welcome else [], cause=event)

    @router.subscriber(CRM_TIER_CHANGES, **subscriber_options(settings, CRM_TIER_CHANGES),
                       title="crm.tier-changes.v1:notifications",
                       description="Upgrade congratulations, VIP welcome, downgrade notice with what is needed, "
                                   "churn-risk win-back, welcome back on reactivation; bulk changes send nothing. "
                                   "A change read before the customer's profile waits for it.")
    async def on_tier_change(event: CustomerTierChanged) -> None:
        if event.data.dimension in ("value_tier", "vip"):
            await repo.save_tier(event.subject, event.data.dimension, event.data.current)
        request = domain.tier_request(event)
        await notifier.submit([request] if request else [], cause=event)

    @router.subscriber(CRM_COMPLAINTS, **subscriber_options(settings, CRM_COMPLAINTS),
                       title="crm.complaints.v1:notifications",
                       description="Acknowledgement with the expected response time in the customer's calendar, "
                                   "apology on an SLA breach, resolution notice and a later satisfaction survey.")
    async def on_complaint(event: ComplaintEvent) -> None:
        if isinstance(event, ComplaintReopened):  # the survey waits for the next resolution
            await repo.cancel_pending(f"complaint_survey:{event.data.complaint_id}:{event.subject}")
            return
        await notifier.submit(domain.complaint_requests(event, survey_delay=survey_delay), cause=event)

    return router
