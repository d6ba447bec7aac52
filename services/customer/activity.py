"""What the customer record takes from each consumed topic, a batch of records at a time.

Every write is keyed by the event's natural id (order, refund, interaction, event id), so a
redelivery or a replay of a topic adds nothing twice. Intake events are applied once per event id:
a replay of an older update never rolls a profile back.

A batch's timeline entries go to the store in one insert; what needs the customer's document is
done per customer, each customer's events in their order, many customers at a time (the store's
latency, not its work, is what a record at a time waits for).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
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

from shared.kafka import TRANSIENT_ERRORS, Rejected, by_subject

from . import domain
from .records import Cause, CustomerRecords, Erased, NotFound
from .repository import Repository

log = structlog.get_logger(__name__)

#: Called with an event of the batch that must go to the DLQ; the rest of the batch carries on.
Reject = Callable[[CloudEvent, Rejected], Awaitable[None]]


def _cause(event: CloudEvent) -> Cause:
    return Cause(id=event.id, at=event.time, source=event.source, actor=event.source, event=event)


def _entry(event: CloudEvent, kind: str, key: str, **fields: Any) -> dict[str, Any]:
    return {"_id": f"{event.subject}|{kind}|{key}", "customer_id": event.subject, "kind": kind, "at": event.time,
            "event_type": event.type, **fields}


class Activity:
    def __init__(self, records: CustomerRecords, repo: Repository, *, concurrency: int = 64,
                 max_attempts: int = 5) -> None:
        self.records = records
        self.repo = repo
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self._failures: dict[str, int] = {}

    # --- batches, one method per consumed topic --------------------------------------------------

    async def intakes(self, events: Sequence[CustomerRegistered | CustomerUpdated], reject: Reject) -> None:
        await self._per_customer(events, self.intake, reject)

    async def purchases(self, events: Sequence[PurchaseCompleted | PurchaseRefunded], reject: Reject) -> None:
        await self._add_entries(events, _purchase_entry, reject)
        # The first purchase of a customer the service does not know makes the prospect.
        first: dict[str, CloudEvent] = {}
        for event in events:
            if isinstance(event, PurchaseCompleted):
                first.setdefault(event.subject, event)
        await self._per_customer(list(first.values()),
                                 lambda event: self.records.ensure_prospect(event.subject, _cause(event)), reject)

    async def interactions(self, events: Sequence[InteractionRecorded], reject: Reject) -> None:
        # A summary is personal data: none is stored for a customer already erased.
        summarised = {event.subject for event in events if event.data.summary}
        erased: set[str] = set()

        async def check(customer_id: str) -> None:
            doc = await self.repo.peek(customer_id)
            if doc is not None and doc.get("status") == "erased":
                erased.add(customer_id)

        await self._bounded(check(customer_id) for customer_id in summarised)
        await self._add_entries(events, lambda event: self.repo.sealed_entry(
            _interaction_entry(event), None if event.subject in erased else event.data.summary), reject)

    async def classifications(self, events: Sequence[CustomerClassification], reject: Reject) -> None:
        await self._per_customer(events, self.classification, reject)

    async def complaints(self, events: Sequence[CloudEvent], reject: Reject) -> None:
        await self._add_entries(events, _complaint_entry, reject)
        await self._per_customer(events, self._complaint_summary, reject)

    async def notifications(self, events: Sequence[NotificationSent | NotificationFailed | NotificationSuppressed],
                            reject: Reject) -> None:
        await self._add_entries(events, _notification_entry, reject)

    # --- one event -------------------------------------------------------------------------------

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
        except NotFound:
            raise Rejected("unknown_customer", f"no customer {event.subject} to update") from None
        await self.repo.mark_seen(event.subject, event.id, event.time)

    async def classification(self, event: CustomerClassification) -> None:
        data = event.data
        dims = domain.classification_fields(data.model_dump())
        stored = await self.repo.peek(event.subject)
        previous = stored.get("classification") if stored else None
        newer = previous is None or previous.get("updated_at") is None or previous["updated_at"] < data.updated_at
        if newer and domain.classification_fields(previous or {}) != dims:
            # Recorded before the snapshot moves on, so a retry still sees the change.
            await self.repo.add_entry(_entry(event, "classification", data.updated_at.isoformat(),
                                             policy_version=data.policy_version, **dims))
        if not newer:
            return  # a replay of an older snapshot: the stored one stays
        await self.repo.set_classification(
            event.subject, {**dims, "policy_version": data.policy_version, "updated_at": data.updated_at,
                            "overrides": dict(data.overrides)}, data.updated_at,
            classified=stored is not None and stored.get("classified_at") is not None)

    async def _complaint_summary(self, event: CloudEvent) -> None:
        data: ComplaintEventData = event.data  # type: ignore[assignment]
        fields = {"status": data.status, "priority": data.priority, "category": data.category}
        await self.repo.set_complaint(event.subject, data.complaint_id, fields, event.time)

    # --- running a batch -------------------------------------------------------------------------

    async def _add_entries(self, events: Sequence[Any], entry: Callable[[Any], dict[str, Any]],
                           reject: Reject) -> None:
        """The batch's timeline entries in one insert. One document the store refuses fails the
        whole insert in FerretDB v1: then each is inserted alone, so only its event is parked."""
        docs = {event.id: entry(event) for event in events}
        try:
            await self.repo.add_entries(docs.values())
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:
            log.warning("timeline_batch_refused_inserting_one_by_one", error=type(exc).__name__, size=len(docs))
            await self._per_customer(events, lambda event: self.repo.insert_entry(docs[event.id]), reject)

    async def _per_customer(self, events: Sequence[CloudEvent], apply: Callable[[Any], Awaitable[None]],
                            reject: Reject) -> None:
        """``apply`` each event: a customer's events in order, customers side by side."""
        async def run(own: list[CloudEvent]) -> None:
            for event in own:
                try:
                    await apply(event)
                except Rejected as exc:
                    await reject(event, exc)
                except TRANSIENT_ERRORS:
                    raise  # not the event's fault: the batch is read again
                except Exception as exc:
                    if not self._gave_up(event):
                        raise
                    # It keeps failing by itself: parked alone, as a record at a time was.
                    await reject(event, Rejected("processing_failed", f"{type(exc).__name__}: {exc}"))

        await self._bounded(run(own) for own in by_subject(events).values())

    def _gave_up(self, event: CloudEvent) -> bool:
        """Whether ``event`` failed ``max_attempts`` times (each failure reads its batch again)."""
        attempts = self._failures.get(event.id, 0) + 1
        if len(self._failures) > 10_000:
            self._failures.clear()
        if attempts >= self.max_attempts:
            self._failures.pop(event.id, None)
            return True
        self._failures[event.id] = attempts
        return False

    async def _bounded(self, work: Iterable[Coroutine[Any, Any, None]]) -> None:
        """Run ``work`` at most ``concurrency`` at a time; every part ends before an error is raised,
        so a batch read again never overlaps the attempt before it."""
        gate = asyncio.Semaphore(self.concurrency)

        async def gated(coro: Coroutine[Any, Any, None]) -> None:
            async with gate:
                await coro

        results = await asyncio.gather(*(gated(coro) for coro in work), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


def _purchase_entry(event: PurchaseCompleted | PurchaseRefunded) -> dict[str, Any]:
    if isinstance(event, PurchaseCompleted):
        data = event.data
        return _entry(event, "purchase", data.order_id, order_id=data.order_id, amount=format(data.total_amount, "f"),
                      currency=data.currency, channel=data.channel, store_id=data.store_id,
                      items=len(data.items or ()))
    refund = event.data
    return _entry(event, "refund", refund.refund_id, refund_id=refund.refund_id, order_id=refund.order_id,
                  amount=format(refund.amount, "f"), currency=refund.currency)


def _interaction_entry(event: InteractionRecorded) -> dict[str, Any]:
    data = event.data
    return _entry(event, "interaction", data.interaction_id, interaction_id=data.interaction_id,
                  interaction_kind=data.kind, channel=data.channel, direction=data.direction,
                  satisfaction=data.satisfaction, complaint_id=data.complaint_id,
                  referred_customer_id=data.referred_customer_id)


def _complaint_entry(event: CloudEvent) -> dict[str, Any]:
    data: ComplaintEventData = event.data  # type: ignore[assignment]
    return _entry(event, "complaint", event.id, complaint_id=data.complaint_id, status=data.status,
                  priority=data.priority, category=data.category)


def _notification_entry(event: NotificationSent | NotificationFailed | NotificationSuppressed) -> dict[str, Any]:
    data = event.data
    return _entry(event, "notification", event.id, notification_id=data.notification_id, trigger=data.trigger,
                  channel=data.channel, template=data.template, outcome=event.type.removeprefix("notification."),
                  reason=data.reason)
