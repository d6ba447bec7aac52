"""Kafka subscribers of the complaints service: validate, call the domain, persist, publish."""

from __future__ import annotations

from typing import Union

import structlog
from faststream.kafka import KafkaRouter

from shared.contract import (
    ComplaintSubmitted,
    CustomerClassification,
    CustomerErased,
    CustomerProfileChanged,
    InteractionRecorded,
)
from shared.contract.events import COMPLAINT_EVENTS
from shared.contract.topics import CRM_COMPLAINT_INTAKE, CRM_COMPLAINTS, CRM_CUSTOMER_TIERS, CRM_CUSTOMERS, CRM_INTERACTIONS
from shared.kafka import Rejected, subscriber_options

from . import domain
from .domain import DomainError
from .policy import customer_tier
from .settings import ComplaintsSettings
from .workflow import NotFound, Workflow

log = structlog.get_logger(__name__)


def build_router(settings: ComplaintsSettings, workflow: Workflow) -> KafkaRouter:
    router = KafkaRouter()
    repo = workflow.repo
    workflow.publisher = router.publisher(
        CRM_COMPLAINTS, title="complaint lifecycle",
        description="complaint.opened, .acknowledged, .assigned, .escalated, .sla_warning, .sla_breached, "
                    ".resolved, .closed, .reopened, .feedback_received; keyed by customer id, ids deterministic.",
        schema=Union[COMPLAINT_EVENTS],  # type: ignore[valid-type]
    )

    @router.subscriber(CRM_COMPLAINT_INTAKE, **subscriber_options(settings, CRM_COMPLAINT_INTAKE), title="complaint intake",
                       description="Opens one complaint per complaint_id (or per event id when none is given).")
    async def on_submitted(event: ComplaintSubmitted) -> None:
        fields = event.data.model_dump(exclude={"complaint_id"})
        try:
            await workflow.submit(event.subject, fields, complaint_id=event.data.complaint_id, source=event.id,
                                  opened_at=event.time, cause=event)
        except DomainError as exc:
            raise Rejected(exc.code, exc.detail) from None

    @router.subscriber(CRM_CUSTOMER_TIERS, **subscriber_options(settings, CRM_CUSTOMER_TIERS), title="customer tiers",
                       description="Keeps each customer's current tier (vip, else value tier) for priorities.")
    async def on_classification(event: CustomerClassification) -> None:
        await repo.put_tier(event.subject, customer_tier(event.data.vip, event.data.value_tier), event.data.updated_at)

    @router.subscriber(CRM_CUSTOMERS, **subscriber_options(settings, CRM_CUSTOMERS), title="customer erasure",
                       description="On customer.erased, removes the customer's personal text from complaints.")
    async def on_customer(event: CustomerProfileChanged | CustomerErased) -> None:
        if isinstance(event, CustomerErased):
            erased = await workflow.erase_customer(event.subject)
            await repo.delete_tier(event.subject)
            log.info("customer_erased", complaints=erased)

    @router.subscriber(CRM_INTERACTIONS, **subscriber_options(settings, CRM_INTERACTIONS), title="survey responses",
                       description="A survey_response with a satisfaction score is feedback on the complaint it "
                                   "names, else on the customer's latest resolved complaint.")
    async def on_interaction(event: InteractionRecorded) -> None:
        data = event.data
        if data.kind != "survey_response" or data.satisfaction is None:
            return
        complaint_id = data.complaint_id or await repo.latest_resolved(event.subject)
        if complaint_id is None:
            return
        try:
            await workflow.change(complaint_id, lambda c, t: domain.record_feedback(
                c, data.satisfaction, "", now=t, rules=workflow.rules, source=f"interaction/{data.interaction_id}",
                customer_id=event.subject),
                cause=event)
        except NotFound:
            # The intake of that complaint may still be on its way; a survey alone opens nothing.
            log.info("survey_for_unknown_complaint", complaint_id=complaint_id)
        except DomainError as exc:
            raise Rejected(exc.code, exc.detail) from None

    return router
