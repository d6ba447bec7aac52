"""What the customer record takes from each consumed topic.

Every write is keyed by the event's natural id (order, refund, interaction, event id), so a
redelivery or a replay of a topic adds nothing twice. Intake events are applied once per event id:
a replay of an older update never rolls a profile back.
"""

from __future__ import annotations

from typing import Any

import structlog

from shared.contract.events import (
    CloudEvent,
    ComplaintEventData,
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

from . import domain
from .records import Cause, CustomerRecords, Erased
from .repository import Repository

log = structlog.get_logger(__name__)


def _cause(event: CloudEvent) -> Cause:
    return Cause(id=event.id, at=event.time, source=event.source, actor=event.source, event=event)


def _entry(event: CloudEvent, kind: str, key: str, **fields: Any) -> dict[str, Any]:
    return {"_id": f"{event.subject}|{kind}|{key}", "customer_id": event.subject, "kind": kind, "at": event.time,
            "event_type": event.type, **fields}


class Activity:
    def __init__(self, records: CustomerRecords, repo: Repository) -> None:
        self.records = records
        self.repo = repo

    async def intake(self, event: CustomerRegistered | CustomerUpdated) -> None:
        if await self.repo.seen(event.subject, event.id):
            return
        changes = {name: getattr(event.data, name) for name in event.data.model_fields_set}
        registered = isinstance(event, CustomerRegistered)
        try:
            await self.records.change(event.subject, changes, _cause(event), activate=registered, create=registered)
        except Erased:
            # An erased customer stays erased, even when the intake topic is replayed.
            log.info("intake_for_erased_customer_ignored", customer_id=event.subject, event_id=event.id)
        await self.repo.mark_seen(event.subject, event.id, event.time)

    async def purchase(self, event: PurchaseCompleted | PurchaseRefunded) -> None:
        if isinstance(event, PurchaseCompleted):
            data = event.data
            await self.repo.add_entry(_entry(event, "purchase", data.order_id, order_id=data.order_id,
                                             amount=format(data.total_amount, "f"), currency=data.currency,
                                             channel=data.channel, store_id=data.store_id,
                                             items=len(data.items or ())))
            await self.records.ensure_prospect(event.subject, _cause(event))
        else:
            refund = event.data
            await self.repo.add_entry(_entry(event, "refund", refund.refund_id, refund_id=refund.refund_id,
                                             order_id=refund.order_id, amount=format(refund.amount, "f"),
                                             currency=refund.currency))

    async def interaction(self, event: InteractionRecorded) -> None:
        data = event.data
        stored = await self.repo.load(event.subject)
        erased = stored is not None and stored.erased
        await self.repo.add_entry(
            _entry(event, "interaction", data.interaction_id, interaction_id=data.interaction_id,
                   interaction_kind=data.kind, channel=data.channel, direction=data.direction,
                   satisfaction=data.satisfaction, complaint_id=data.complaint_id,
                   referred_customer_id=data.referred_customer_id),
            summary=None if erased else data.summary)

    async def classification(self, event: CustomerClassification) -> None:
        data = event.data
        dims = domain.classification_fields(data.model_dump())
        stored = await self.repo.load(event.subject)
        previous = stored.classification if stored else None
        newer = previous is None or previous.get("updated_at") is None or previous["updated_at"] < data.updated_at
        if newer and domain.classification_fields(previous or {}) != dims:
            # Recorded before the snapshot moves on, so a retry still sees the change.
            await self.repo.add_entry(_entry(event, "classification", data.updated_at.isoformat(),
                                             policy_version=data.policy_version, **dims))
        await self.repo.set_classification(
            event.subject, {**dims, "policy_version": data.policy_version, "updated_at": data.updated_at,
                            "overrides": dict(data.overrides)}, data.updated_at)

    async def complaint(self, event: CloudEvent) -> None:
        data: ComplaintEventData = event.data  # type: ignore[assignment]
        fields = {"status": data.status, "priority": data.priority, "category": data.category}
        await self.repo.add_entry(_entry(event, "complaint", event.id, complaint_id=data.complaint_id, **fields))
        await self.repo.set_complaint(event.subject, data.complaint_id, fields, event.time)

    async def notification(self, event: NotificationSent | NotificationFailed | NotificationSuppressed) -> None:
        data = event.data
        await self.repo.add_entry(_entry(event, "notification", event.id, notification_id=data.notification_id,
                                         trigger=data.trigger, channel=data.channel, template=data.template,
                                         outcome=event.type.removeprefix("notification."), reason=data.reason))
