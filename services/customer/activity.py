"""What the customer record takes from each consumed topic, a batch of records at a time.

Every write is keyed by the event's natural id (order, refund, interaction, event id), so a
redelivery or a replay of a topic adds nothing twice. Intake events are applied once per event id
(the customer's document keeps the ids it applied): a replay of an older update never rolls a
profile back.

Batches run through ``shared.batch``: a batch's timeline entries go to the store in one insert;
what needs the customer's document is done per customer, each customer's events in their order,
many customers at a time; a classification or a complaint summary is written once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

from shared.contract.events import (
    AccountManagerChanged,
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

from shared.batch import BatchRunner, Reject, Remembered
from shared.kafka import TRANSIENT_ERRORS, Rejected

from . import domain
from .repository import Repository
from .workflow import Cause, Erased, NotFound, Workflow

log = structlog.get_logger(__name__)


def _cause(event: CloudEvent) -> Cause:
    return Cause(id=event.id, at=event.time, source=event.source, actor=event.source, event=event)


def _entry(event: CloudEvent, kind: str, key: str, **fields: Any) -> dict[str, Any]:
    return {"_id": f"{event.subject}|{kind}|{key}", "customer_id": event.subject, "kind": kind, "at": event.time,
            "event_type": event.type, **fields}


@dataclass(frozen=True)
class Classified:
    """The stored classification of a customer: when it was made, its dimensions and (when this
    process wrote it) the policy version and overrides it was written with."""

    updated_at: datetime | None
    dims: dict[str, Any]
    stored: bool
    rest: tuple[Any, ...] | None = None
    #: Whether the customer has a document (then a write needs no upsert).
    exists: bool = True


def _written_with(policy_version: str | None, overrides: Mapping[str, str]) -> tuple[Any, ...]:
    """What a stored classification holds besides its dimensions and time, comparable."""
    return policy_version, sorted(overrides.items())


class Activity:
    def __init__(self, workflow: Workflow, repo: Repository, *, concurrency: int = 64,
                 max_attempts: int = 5) -> None:
        self.workflow = workflow
        self.repo = repo
        self.runner = BatchRunner(concurrency=concurrency, max_attempts=max_attempts)
        # Only this consumer writes a customer's classification: what it wrote needs no read.
        self.known_classifications: Remembered[str, Classified] = Remembered()

    # --- batches, one method per consumed topic --------------------------------------------------

    async def intakes(self, events: Sequence[CustomerRegistered | CustomerUpdated], reject: Reject) -> None:
        # A customer's first event, when it registers an id this process never saw, joins the batch's
        # one insert of new profiles; every other event (and one whose id is taken after all) is
        # applied on its own, after it, in the order read.
        first: dict[str, CustomerRegistered | CustomerUpdated] = {}
        for event in events:
            first.setdefault(event.subject, event)
        fresh = {e.subject: e for e in first.values()
                 if isinstance(e, CustomerRegistered) and self.workflow.unseen(e.subject)}
        created = await self._create([
            (e.subject, {name: getattr(e.data, name) for name in e.data.model_fields_set}, _cause(e), True)
            for e in fresh.values()])
        done = {fresh[customer_id].id for customer_id in created}
        await self.runner.per_event([e for e in events if e.id not in done], self.intake, reject)

    async def purchases(self, events: Sequence[PurchaseCompleted | PurchaseRefunded], reject: Reject) -> None:
        await self._add_entries(events, _purchase_entry, reject)
        # The first purchase of a customer the service does not know makes the prospect: those of
        # ids never seen in one insert, the rest (and any id taken after all) one at a time.
        first: dict[str, CloudEvent] = {}
        for event in events:
            if isinstance(event, PurchaseCompleted):
                first.setdefault(event.subject, event)
        fresh = [e for e in first.values() if self.workflow.unseen(e.subject)]
        created = await self._create([(e.subject, {}, _cause(e), False) for e in fresh])
        await self.runner.per_event([e for e in first.values() if e.subject not in created],
                                    lambda event: self.workflow.ensure_prospect(event.subject, _cause(event)), reject)

    async def interactions(self, events: Sequence[InteractionRecorded], reject: Reject) -> None:
        # A summary is personal data: none is stored for a customer already erased.
        summarised = {event.subject for event in events if event.data.summary}
        erased: set[str] = set()

        async def check(customer_id: str) -> None:
            doc = await self.repo.peek(customer_id)
            if doc is not None and doc.get("status") == "erased":
                erased.add(customer_id)

        await self.runner.bounded(check(customer_id) for customer_id in summarised)
        await self._add_entries(events, lambda event: self.repo.sealed_entry(
            _interaction_entry(event), None if event.subject in erased else event.data.summary), reject)

    async def account_managers(self, events: Sequence[AccountManagerChanged], reject: Reject) -> None:
        """Each customer's newest account manager of the batch (the highest revision) for the
        360-degree view; a lower revision read late changes nothing."""
        newest: dict[str, AccountManagerChanged] = {}
        for event in events:
            held = newest.get(event.subject)
            if held is None or event.data.revision > held.data.revision:
                newest[event.subject] = event

        async def write(event: AccountManagerChanged) -> None:
            d = event.data
            manager = {"id": d.manager_id, "name": d.manager_name, "since": d.changed_at} if d.manager_id else None
            await self.repo.set_account_manager(event.subject, manager, d.revision)

        await self.runner.bounded(self.runner.guarded(event, write(event), reject) for event in newest.values())

    async def classifications(self, events: Sequence[CustomerClassification], reject: Reject) -> None:
        """Each customer's snapshots of the batch against the stored one: every change of a dimension
        joins the timeline (all in one insert, before any snapshot moves on, so that a batch read
        again still sees the changes), then the newest snapshot is written, once per customer."""
        newest: dict[str, tuple[CustomerClassification, Classified]] = {}
        changes: dict[str, tuple[CloudEvent, dict[str, Any]]] = {}

        async def decide(customer_id: str, own: list[CustomerClassification]) -> None:
            known = self.known_classifications.get(customer_id) or await self._stored_classification(customer_id)
            before = known
            for event in own:
                data = event.data
                if known.updated_at is not None and data.updated_at <= known.updated_at:
                    continue  # a replay of an older snapshot: the stored one stays
                dims = domain.classification_fields(data.model_dump())
                if dims != known.dims:
                    changes[event.id] = (event, _entry(event, "classification", data.updated_at.isoformat(),
                                                       policy_version=data.policy_version, **dims))
                known = Classified(data.updated_at, dims, True)
                newest[customer_id] = (event, before)

        await self.runner.per_customer(events, decide, reject)
        await self._add_entries([e for e, _ in changes.values()], lambda e: changes[e.id][1], reject)

        writes: dict[str, tuple[CustomerClassification, Classified, dict[str, Any], Classified]] = {}
        for customer_id, (event, before) in newest.items():
            data = event.data
            dims = domain.classification_fields(data.model_dump())
            rest = _written_with(data.policy_version, data.overrides)
            if before.stored and before.rest == rest and before.dims == dims:
                # Only the metrics moved (most snapshots): the stored classification stays as it
                # is, dated when it last changed.
                self.known_classifications.put(customer_id, replace(before, updated_at=data.updated_at))
                continue
            writes[customer_id] = (event, before, {**dims, "policy_version": data.policy_version,
                                                   "updated_at": data.updated_at, "overrides": dict(data.overrides)},
                                   Classified(data.updated_at, dims, True, rest))
        # All in a few commands. Should the store refuse them, each is written on its own below
        # (the writes are conditional: one done twice changes nothing).
        together = dict(writes)
        try:
            await self.repo.set_classifications([(c, snapshot, event.data.updated_at, before.stored, before.exists)
                                                 for c, (event, before, snapshot, _) in together.items()])
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:
            log.warning("classifications_refused_writing_one_by_one", error=type(exc).__name__, size=len(together))
            together = {}
        for customer_id, (*_, after) in together.items():
            self.known_classifications.put(customer_id, after)

        async def write(customer_id: str, event: CustomerClassification, before: Classified,
                        snapshot: dict[str, Any], after: Classified) -> None:
            await self.repo.set_classification(customer_id, snapshot, event.data.updated_at, classified=before.stored)
            self.known_classifications.put(customer_id, after)

        await self.runner.bounded(self.runner.guarded(w[0], write(customer_id, *w), reject)
                                  for customer_id, w in writes.items() if customer_id not in together)

    async def _stored_classification(self, customer_id: str) -> Classified:
        stored = await self.repo.peek(customer_id)
        snapshot = (stored or {}).get("classification") or {}
        return Classified(snapshot.get("updated_at"), domain.classification_fields(snapshot),
                          stored is not None and stored.get("classified_at") is not None,
                          _written_with(snapshot.get("policy_version"), snapshot.get("overrides") or {}),
                          exists=stored is not None)

    async def complaints(self, events: Sequence[CloudEvent], reject: Reject) -> None:
        await self._add_entries(events, _complaint_entry, reject)
        # The summary keeps the newest event of each complaint: one write per complaint.
        newest: dict[tuple[str, str], CloudEvent] = {}
        for event in events:
            key = (event.subject, event.data.complaint_id)  # type: ignore[attr-defined]
            if key not in newest or newest[key].time < event.time:
                newest[key] = event
        await self.runner.per_event(list(newest.values()), self._complaint_summary, reject)

    async def notifications(self, events: Sequence[NotificationSent | NotificationFailed | NotificationSuppressed],
                            reject: Reject) -> None:
        await self._add_entries(events, _notification_entry, reject)

    # --- one event -------------------------------------------------------------------------------

    async def intake(self, event: CustomerRegistered | CustomerUpdated) -> None:
        changes = {name: getattr(event.data, name) for name in event.data.model_fields_set}
        registered = isinstance(event, CustomerRegistered)
        try:
            await self.workflow.change(event.subject, changes, _cause(event), activate=registered, create=registered,
                                      once=True)
        except Erased:
            # An erased customer stays erased, even when the intake topic is replayed.
            log.info("intake_for_erased_customer_ignored", customer_id=event.subject, event_id=event.id)
        except NotFound:
            raise Rejected("unknown_customer", f"no customer {event.subject} to update") from None

    async def _complaint_summary(self, event: CloudEvent) -> None:
        data: ComplaintEventData = event.data  # type: ignore[assignment]
        fields = {"status": data.status, "priority": data.priority, "category": data.category}
        await self.repo.set_complaint(event.subject, data.complaint_id, fields, event.time)

    # --- running a batch -------------------------------------------------------------------------

    async def _create(self, new: list[tuple[str, dict[str, Any], Cause, bool]]) -> set[str]:
        """``Workflow.create_many``; should the store refuse the insert (one document it will not
        take fails all of it in FerretDB v1), nothing counts as made and each event goes its own
        way, where only the one at fault is dead-lettered."""
        if not new:
            return set()
        try:
            created = await self.workflow.create_many(new)
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:
            log.warning("new_customers_refused_applying_one_by_one", error=type(exc).__name__, size=len(new))
            return set()
        # A document just made holds no classification: its first one needs no read. Only where
        # nothing is remembered, since the classifications consumer may have written one since.
        for customer_id in created:
            if self.known_classifications.get(customer_id) is None:
                self.known_classifications.put(customer_id, Classified(None, {}, False))
        return created

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
            await self.runner.per_event(events, lambda event: self.repo.insert_entry(docs[event.id]), reject)


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
    # Who holds the complaint and, for a staff alert, whom it told and why: the staff id and codes
    # only, never the person's name or contacts (the contract forbids copying them).
    alert = getattr(data, "alert", None)
    told = {"alert_kind": alert.kind, "staff_id": alert.staff_id, "rung": alert.rung, "alert_reason": alert.reason,
            "on_duty": alert.on_duty} if alert is not None else {}
    return _entry(event, "complaint", event.id, complaint_id=data.complaint_id, status=data.status,
                  priority=data.priority, category=data.category, assignee=data.assignee, team=data.team,
                  escalation_level=data.escalation_level, sla_target=data.sla_target, **told)


def _notification_entry(event: NotificationSent | NotificationFailed | NotificationSuppressed) -> dict[str, Any]:
    data = event.data
    return _entry(event, "notification", event.id, notification_id=data.notification_id, trigger=data.trigger,
                  channel=data.channel, template=data.template, outcome=event.type.removeprefix("notification."),
                  reason=data.reason)
