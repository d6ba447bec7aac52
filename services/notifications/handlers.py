"""Kafka subscribers of the notifications service: validate, call the domain, persist, publish."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Union

import structlog
from faststream.kafka import KafkaRouter

from shared.clock import Clock
from shared.contract import (
    AccountManagerChanged,
    CloudEvent,
    ComplaintEvent,
    ComplaintReopened,
    ComplaintStaffAlert,
    CustomerClassification,
    CustomerErased,
    CustomerProfileChanged,
    CustomerTierChanged,
    InteractionRecorded,
    NotificationSent,
    PurchaseCompleted,
    PurchaseRefunded,
    ReturnVisitDue,
)
from shared.contract.topics import (
    CRM_ACCOUNT_MANAGERS,
    CRM_CARE_TASKS,
    CRM_COMPLAINTS,
    CRM_CUSTOMER_TIERS,
    CRM_CUSTOMERS,
    CRM_INTERACTIONS,
    CRM_NOTIFICATIONS,
    CRM_TIER_CHANGES,
    ORDERS_PURCHASES,
)
from shared.batch import BatchRunner
from shared.kafka import (
    TRANSIENT_ERRORS,
    DeadLetterMiddleware,
    Rejected,
    batch_options,
    dead_letter_event,
    subscriber_options,
)

from . import alerts, domain, satisfaction, triggers
from .workflow import Workflow
from .repository import Repository
from .settings import NotificationsSettings


log = structlog.get_logger(__name__)
SUBSCRIBED = (CRM_CUSTOMERS, CRM_TIER_CHANGES, CRM_COMPLAINTS, CRM_INTERACTIONS, CRM_CUSTOMER_TIERS,
              CRM_ACCOUNT_MANAGERS, ORDERS_PURCHASES)


async def submit_each(workflow: Workflow, asked: list[tuple[domain.Request, CloudEvent]]) -> None:
    """Submit a batch's requests together, each with the event behind it. A key asked again in the
    same batch (a redelivery, a republished change) waits for the next round, so that it meets the
    record of the first as it would have one event later."""
    while asked:
        round_: dict[str, tuple[domain.Request, CloudEvent]] = {}
        later = []
        for request, event in asked:
            if request.dedupe_key in round_:
                later.append((request, event))
            else:
                round_[request.dedupe_key] = (request, event)
        await workflow.submit([r for r, _ in round_.values()], causes={k: e for k, (_, e) in round_.items()})
        asked = later


def build_router(settings: NotificationsSettings, repo: Repository, workflow: Workflow, clock: Clock,
                 dead_letters: DeadLetterMiddleware) -> KafkaRouter:
    router = KafkaRouter()
    runner = BatchRunner(max_attempts=settings.handler_max_attempts)

    async def reject(event: CloudEvent, exc: Rejected) -> None:
        await dead_letter_event(dead_letters, event, exc)

    # What the workflow publishes (through the runtime's publisher), declared for the AsyncAPI document.
    router.publisher(
        CRM_NOTIFICATIONS, title="crm.notifications.v1:publish",
        description="The outcome of every message: notification.sent, notification.failed, or "
                    "notification.suppressed with its reason (no_consent, suppression_list, frequency_cap, "
                    "quiet_hours_deferred with scheduled_for, duplicate, no_contact).",
        schema=NotificationSent,
    )
    router.publisher(
        CRM_CARE_TASKS, title="crm.care-tasks.v1:publish",
        description="care.return_visit.due: a customer with an account manager whose follow-up falls due gets "
                    "a return visit from the manager instead of the follow-up message; id and visit_id are the "
                    "same however often the day is run.",
        schema=ReturnVisitDue,
    )

    welcome_age = timedelta(days=settings.welcome_max_age_days)
    survey_delay = timedelta(hours=settings.survey_delay_hours)

    @router.subscriber(CRM_CUSTOMERS, **batch_options(settings, CRM_CUSTOMERS),
                       title="crm.customers.v1:notifications",
                       description="Keeps this service's copy of contacts, locale, time zone, country, consents "
                                   "and birthday; welcomes a new registration and thanks the customer named in "
                                   "its referred_by; an erasure removes the copy.")
    async def on_customers(events: list[Union[CustomerProfileChanged, CustomerErased]]) -> None:
        asked: list[tuple[domain.Request, CloudEvent]] = []
        profiles: dict[str, tuple[domain.Profile, CloudEvent]] = {}

        async def apply(_: str, customer_events: list[CloudEvent]) -> None:
            # One customer's changes in the order they were made; the newest profile is kept, to be
            # written with the batch's others. The stored copy is read only for what an event may
            # lack (its creation time).
            latest: domain.Profile | None = None
            for event in customer_events:
                if isinstance(event, CustomerErased):
                    await repo.erase(event.subject)
                    latest = None
                    profiles.pop(event.subject, None)
                    continue
                data = event.data  # type: ignore[attr-defined]
                previous = latest or (await repo.profile(event.subject) if data.created_at is None else None)
                latest = domain.profile_from_event(event, previous)  # type: ignore[arg-type]
                welcome = triggers.welcome_request(event, now=clock.now(), max_age=welcome_age)  # type: ignore[arg-type]
                thanks = triggers.referred_request(event, now=clock.now(), max_age=welcome_age)  # type: ignore[arg-type]
                asked.extend((request, event) for request in (welcome, thanks) if request)
                profiles[event.subject] = (latest, event)

        def zone(profile: domain.Profile) -> str:
            return profile.timezone or settings.default_timezone

        await runner.per_customer(events, apply, reject)
        try:
            await repo.save_profiles([(p, zone(p)) for p, _ in profiles.values()])
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:  # a profile the store refuses: each alone, so that only its event is parked
            log.warning("profile_batch_refused_writing_one_by_one", error=type(exc).__name__, size=len(profiles))
            for profile, event in profiles.values():
                await runner.guarded(event, repo.save_profile(profile, zone(profile)), reject)
        await submit_each(workflow, asked)

    @router.subscriber(CRM_TIER_CHANGES, **batch_options(settings, CRM_TIER_CHANGES),
                       title="crm.tier-changes.v1:notifications",
                       description="Upgrade congratulations, VIP welcome, downgrade notice with what is needed, "
                                   "churn-risk win-back, welcome back on reactivation; bulk changes send nothing. "
                                   "A change read before the customer's profile waits for it.")
    async def on_tier_changes(events: list[CustomerTierChanged]) -> None:
        # The last change of a customer's tier in the batch is the one to keep; all are stored
        # before the batch's messages are decided together (the frequency cap sees them all).
        # One write per customer for both dimensions (a new customer's arrive together).
        latest: dict[str, dict[str, str]] = {}
        for e in events:
            if e.data.dimension in ("value_tier", "vip"):
                latest.setdefault(e.subject, {})[e.data.dimension] = e.data.current
        await repo.save_tiers(latest)
        await submit_each(workflow, [(r, e) for e in events if (r := triggers.tier_request(e))])

    @router.subscriber(CRM_CUSTOMER_TIERS, **batch_options(settings, CRM_CUSTOMER_TIERS),
                       title="crm.customer-tiers.v1:notifications",
                       description="A member tier waiting out its grace period below its line: one warning per "
                                   "grace period saying what to spend by when to keep it.")
    async def on_classifications(events: list[CustomerClassification]) -> None:
        now = clock.now()
        await submit_each(workflow, [(r, e) for e in events if (r := triggers.grace_warning_request(e, now=now))])

    @router.subscriber(CRM_INTERACTIONS, **batch_options(settings, CRM_INTERACTIONS),
                       title="crm.interactions.v1:notifications",
                       description="A referral thanks the referrer, once per customer referred, within consent.")
    async def on_interactions(events: list[InteractionRecorded]) -> None:
        await submit_each(workflow, [(r, e) for e in events if (r := triggers.referral_request(e))])

    survey_share = settings.purchase_survey_share
    purchase_delay = timedelta(hours=settings.purchase_survey_delay_hours)
    purchase_age = timedelta(days=settings.purchase_survey_max_age_days)

    @router.subscriber(ORDERS_PURCHASES, **batch_options(settings, ORDERS_PURCHASES),
                       title="orders.purchases.v1:notifications",
                       description="A sample of purchases (NOTIFICATIONS_PURCHASE_SURVEY_SHARE, chosen by order id) "
                                   "gets a satisfaction survey NOTIFICATIONS_PURCHASE_SURVEY_DELAY_HOURS later, "
                                   "within consent, quiet hours and caps; a refund naming the order before then "
                                   "withdraws it (notification.suppressed, reason order_refunded).")
    async def on_purchases(events: list[Union[PurchaseCompleted, PurchaseRefunded]]) -> None:
        now = clock.now()
        await submit_each(workflow, [
            (r, e) for e in events if isinstance(e, PurchaseCompleted) and (r := satisfaction.purchase_request(
                e, share=survey_share, delay=purchase_delay, now=now, max_age=purchase_age))])
        # After the batch's surveys were asked for: a refund in the same batch withdraws its order's too.
        await asyncio.gather(*(workflow.withdraw(key, "order_refunded", e) for e in events
                               if isinstance(e, PurchaseRefunded) and (key := satisfaction.refunded_survey(e))))

    @router.subscriber(CRM_COMPLAINTS, **subscriber_options(settings, CRM_COMPLAINTS),
                       title="crm.complaints.v1:notifications",
                       description="Acknowledgement with the expected response time in the customer's calendar, "
                                   "apology on an SLA breach, resolution notice and a later satisfaction survey; "
                                   "complaint.staff_alert goes once to the member of staff it names, by e-mail "
                                   "or their webhook, whatever the customer's consents and quiet hours.")
    async def on_complaint(event: ComplaintEvent) -> None:
        if isinstance(event, ComplaintStaffAlert):
            await workflow.alert_staff(alerts.message_from(event))
            return
        if isinstance(event, ComplaintReopened):  # the survey waits for the next resolution
            await repo.cancel_pending(f"complaint_survey:{event.data.complaint_id}:{event.subject}")
            return
        await workflow.submit(triggers.complaint_requests(event, survey_delay=survey_delay), cause=event)

    @router.subscriber(CRM_ACCOUNT_MANAGERS, **batch_options(settings, CRM_ACCOUNT_MANAGERS),
                       title="crm.account-managers.v1:notifications",
                       description="Who has an account manager: their follow-up becomes the manager's return visit.")
    async def on_account_managers(events: list[AccountManagerChanged]) -> None:
        newest: dict[str, AccountManagerChanged] = {}
        for event in events:
            if event.subject not in newest or event.data.revision > newest[event.subject].data.revision:
                newest[event.subject] = event
        await asyncio.gather(*(repo.save_account_manager(cid, e.data.manager_id, e.data.revision)
                               for cid, e in newest.items()))

    return router
