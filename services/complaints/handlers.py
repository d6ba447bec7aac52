"""Kafka subscribers of the complaints service: validate, call the domain, persist, publish."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Union

import structlog
from faststream.kafka import KafkaRouter

from shared.batch import BatchRunner, ForgetOnRebalance
from shared.contract import (
    AccountManagerChanged,
    CloudEvent,
    ComplaintSubmitted,
    CustomerClassification,
    CustomerErased,
    CustomerProfileChanged,
    InteractionRecorded,
    ReturnVisitDue,
)
from shared.contract.events import COMPLAINT_EVENTS
from shared.contract.topics import (
    CRM_ACCOUNT_MANAGERS,
    CRM_CARE_TASKS,
    CRM_COMPLAINT_INTAKE,
    CRM_COMPLAINTS,
    CRM_CUSTOMER_TIERS,
    CRM_CUSTOMERS,
    CRM_INTERACTIONS,
)
from shared.kafka import (
    TRANSIENT_ERRORS,
    DeadLetterMiddleware,
    Rejected,
    batch_options,
    dead_letter_event,
)

from . import domain
from .accounts_workflow import AccountsWorkflow
from .domain import DomainError
from .policy import customer_tier
from .settings import ComplaintsSettings
from .workflow import NotFound, Submission, Workflow

log = structlog.get_logger(__name__)


def build_router(settings: ComplaintsSettings, workflow: Workflow, dead_letters: DeadLetterMiddleware,
                 accounts: AccountsWorkflow) -> KafkaRouter:
    router = KafkaRouter()
    runner = BatchRunner(max_attempts=settings.handler_max_attempts)
    repo = workflow.repo
    # What the workflow publishes (through the runtime's publisher), declared for the AsyncAPI document.
    router.publisher(
        CRM_COMPLAINTS, title="complaint lifecycle",
        description="complaint.opened, .acknowledged, .assigned, .escalated, .sla_warning, .sla_breached, "
                    ".resolved, .closed, .reopened, .feedback_received, and .staff_alert (the member of staff "
                    "an escalation, warning or breach concerns, with their contact); keyed by customer id, "
                    "ids deterministic.",
        schema=Union[COMPLAINT_EVENTS],  # type: ignore[valid-type]
    )
    router.publisher(
        CRM_ACCOUNT_MANAGERS, title="account managers",
        description="customer.account_manager.changed: each change of a customer's account manager (by the "
                    "account rule or a person), with who, when, from, to and why; compacted, keyed by customer "
                    "id, ids deterministic (customer and revision).",
        schema=AccountManagerChanged,
    )
    router.publisher(
        CRM_INTERACTIONS, title="return-visit outcomes",
        description="customer.interaction.recorded of kind return_visit: the outcome of an account manager's "
                    "return visit (POST /tasks/{id}/outcome); interaction_id is the task's id.",
        schema=InteractionRecorded,
    )

    # In batches: the complaints of a batch are opened with one insert, one outbox clearing and
    # their events published together; the records are committed once all of them are stored.
    @router.subscriber(CRM_COMPLAINT_INTAKE, **batch_options(settings, CRM_COMPLAINT_INTAKE),
                       title="complaint intake",
                       description="Opens one complaint per complaint_id (or per event id when none is given).")
    async def on_submitted(events: list[ComplaintSubmitted]) -> None:
        submissions = [Submission(e.subject, e.data.model_dump(exclude={"complaint_id"}), e.data.complaint_id,
                                  e.id, e.time, e) for e in events]
        try:
            results = await workflow.submit_many(submissions)
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            # A record the store refuses must not hold back, or send to the DLQ, the batch around it.
            results = [await _alone(workflow, submission) for submission in submissions]
        for event, result in zip(events, results, strict=True):
            if isinstance(result, DomainError):
                await dead_letter_event(dead_letters, event, Rejected(result.code, result.detail))

    @router.subscriber(CRM_CUSTOMER_TIERS, **batch_options(settings, CRM_CUSTOMER_TIERS,
                                                           listener=ForgetOnRebalance(repo.known_tiers)),
                       title="customer tiers",
                       description="Keeps each customer's current tier (vip, else value tier) for priorities; a "
                                   "tier the account rule names gives the customer an account manager.")
    async def on_classifications(events: list[CustomerClassification]) -> None:
        newest = {e.subject: e for e in sorted(events, key=lambda e: e.data.updated_at)}
        tiers = {cid: customer_tier(e.data.vip, e.data.value_tier) for cid, e in newest.items()}
        changed = await repo.put_tiers((cid, tiers[cid], e.data.updated_at) for cid, e in newest.items())
        await accounts.tiers_changed((cid, tiers[cid]) for cid in changed)

    @router.subscriber(CRM_CUSTOMERS, **batch_options(settings, CRM_CUSTOMERS,
                                                      listener=ForgetOnRebalance(accounts.repo.known_profiles)),
                       title="customer erasure",
                       description="On customer.erased, removes the customer's personal text from complaints and "
                                   "the account; a profile's needs, region and industry feed the account rule.")
    async def on_customers(events: list[CustomerProfileChanged | CustomerErased]) -> None:
        erased_now = set()
        for event in events:
            if isinstance(event, CustomerErased):
                erased = await workflow.erase_customer(event.subject)
                await asyncio.gather(repo.delete_tier(event.subject), repo.forget_satisfaction(event.subject),
                                     accounts.erase(event.subject))
                erased_now.add(event.subject)
                log.info("customer_erased", complaints=erased)
        await accounts.profiles_changed([e for e in events if isinstance(e, CustomerProfileChanged)
                                         and e.subject not in erased_now])

    @router.subscriber(CRM_CARE_TASKS, **batch_options(settings, CRM_CARE_TASKS), title="return visits due",
                       description="care.return_visit.due becomes a task in the account manager's work queue, "
                                   "once per visit_id; a customer without an account manager is dead-lettered "
                                   "(not_managed).")
    async def on_care_tasks(events: list[ReturnVisitDue]) -> None:
        await runner.per_event(events, visit, reject)

    async def visit(event: ReturnVisitDue) -> None:
        try:
            await accounts.visit_due(event)
        except DomainError as exc:
            raise Rejected(exc.code, exc.detail) from None

    @router.subscriber(CRM_INTERACTIONS, **batch_options(settings, CRM_INTERACTIONS), title="survey responses",
                       description="A survey_response with a satisfaction score is feedback on the complaint it "
                                   "names, else on the customer's latest complaint if it was resolved within "
                                   "COMPLAINTS_SURVEY_WINDOW_DAYS before the answer; otherwise it is general "
                                   "satisfaction, reported by tier in GET /reports/complaints.")
    async def on_interactions(events: list[InteractionRecorded]) -> None:
        await runner.per_event(events, feedback, reject)

    async def feedback(event: InteractionRecorded) -> None:
        try:
            await _feedback(workflow, event)
        except DomainError as exc:
            raise Rejected(exc.code, exc.detail) from None

    async def reject(event: CloudEvent, exc: Rejected) -> None:
        await dead_letter_event(dead_letters, event, exc)

    return router


async def _feedback(workflow: Workflow, event: InteractionRecorded) -> None:
    data = event.data
    if data.kind != "survey_response" or data.satisfaction is None:
        return
    complaint_id = data.complaint_id
    if complaint_id is None:
        latest = await workflow.repo.latest_resolved(event.subject)
        # Judged on the answer's own time, so that a replay decides alike.
        window = timedelta(days=workflow.rules.survey_window_days)
        if latest is None or latest[1] is None or not event.time - window <= latest[1] <= event.time + window:
            # General satisfaction: kept for the report by tier (tiering reads the same answer for loyalty).
            tier = await workflow.repo.tier(event.subject)
            await workflow.repo.record_satisfaction(data.interaction_id, event.subject, data.satisfaction, event.time,
                                                    tier)
            log.info("survey_without_recent_complaint", customer_id=event.subject)
            return
        complaint_id = latest[0]
    try:
        await workflow.change(complaint_id, lambda c, t: domain.record_feedback(
            c, data.satisfaction, (data.summary or "")[:2000], now=t, rules=workflow.rules, source=f"interaction/{data.interaction_id}",
            customer_id=event.subject),
            cause=event)
    except NotFound:
        # The intake of that complaint may still be on its way; a survey alone opens nothing.
        log.info("survey_for_unknown_complaint", complaint_id=complaint_id)


async def _alone(workflow: Workflow, submission: Submission) -> tuple[Any, bool] | DomainError:
    try:
        [result] = await workflow.submit_many([submission])
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        log.warning("intake_failed", error=type(exc).__name__)
        return DomainError("processing_failed", f"{type(exc).__name__}: {str(exc)[:300]}")
    return result
