"""Applies the domain's operations to stored complaints and publishes what they cause.

Each change is: read the complaint, run a pure domain operation with the clock's ``now``, write the
result and its events (the outbox) at the revision read, publish, clear the outbox. A lost race is
retried from a fresh read. Event ids are uuid5 of complaint id, revision and position, so a retry
or a republished outbox repeats the same ids.

Within one process, changes of one complaint also take turns on a lock: FerretDB v1 does not apply
the revision filter of a replace atomically, so two concurrent writers (an HTTP transition and a
scheduler tick) could both succeed and the later one silently drop the earlier one's change.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from shared.clock import Clock
from shared.contract import EVENT_TYPES, CloudEvent
from shared.contract.events import ComplaintEventData
from shared.kafka import publish_event

from . import domain
from .domain import Complaint, DomainError, Emit, Rules
from .repository import Repository

log = structlog.get_logger(__name__)
NAMESPACE = uuid.UUID("0b7f6f0e-3c55-4bde-9d8f-5f0c2f7c1a01")
SOURCE = "carecrm/complaints"
MAX_RACES = 20

Operation = Callable[[Complaint, datetime], tuple[Complaint, list[Emit]]]


class NotFound(LookupError):
    pass


class Workflow:
    def __init__(self, repo: Repository, rules: Rules, clock: Clock) -> None:
        self.repo = repo
        self.rules = rules
        self.clock = clock
        #: The ``crm.complaints.v1`` publisher, set when the Kafka router is built.
        self.publisher: Any = None
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, complaint_id: str) -> asyncio.Lock:
        lock = self._locks.get(complaint_id)
        if lock is None:
            lock = self._locks[complaint_id] = asyncio.Lock()
        return lock

    def now(self) -> datetime:
        return self.clock.now()

    async def submit(self, customer_id: str, fields: dict[str, Any], *, complaint_id: str | None, source: str,
                     opened_at: datetime, cause: CloudEvent | None = None,
                     linked_complaint_id: str | None = None) -> tuple[Complaint, bool]:
        """Open a complaint once: the same complaint id, or the same source id, finds the first one."""
        complaint_id = complaint_id or f"CMP-{uuid.uuid5(NAMESPACE, f'{customer_id}/{source}')}"
        loaded = await self.repo.load(complaint_id)
        if loaded is None:
            tier = await self.repo.tier(customer_id)
            complaint, emits = domain.open_complaint(
                complaint_id=complaint_id, customer_id=customer_id, fields=fields, tier=tier, opened_at=opened_at,
                rules=self.rules, source=source, linked_complaint_id=linked_complaint_id)
            # Published before the complaint is stored: the opening event's id depends only on the
            # complaint id, so a retry after a crash in between repeats the same event, and no second
            # write is needed to clear an outbox.
            await self._send(self._render(complaint, emits), cause)
            if await self.repo.insert(complaint, []):
                log.info("complaint_opened", complaint_id=complaint_id, priority=complaint.priority,
                         sla_policy=complaint.sla_policy)
                return complaint, True
            loaded = await self.repo.load(complaint_id)
            assert loaded is not None
        existing, outbox = loaded
        if existing.customer_id != customer_id:
            raise DomainError("complaint_id_taken", "the complaint id belongs to another customer")
        await self._publish(existing, outbox, cause)  # a retry after a crash between write and publish
        return existing, False

    async def change(self, complaint_id: str, operation: Operation, *, cause: CloudEvent | None = None) -> Complaint:
        async with self._lock(complaint_id):
            return await self._change(complaint_id, operation, cause)

    async def _change(self, complaint_id: str, operation: Operation, cause: CloudEvent | None) -> Complaint:
        for _ in range(MAX_RACES):
            loaded = await self.repo.load(complaint_id)
            if loaded is None:
                raise NotFound(complaint_id)
            before, outbox = loaded
            after, emits = operation(before, self.now())
            if not emits and after == before:
                return before
            after.revision = before.revision + 1
            pending = outbox + self._render(after, emits)
            if await self.repo.replace(after, pending, expected_revision=before.revision):
                await self._publish(after, pending, cause)
                return after
        raise RuntimeError(f"complaint {complaint_id} kept changing under {MAX_RACES} attempts")

    async def reopen_or_link(self, complaint_id: str, reason: str) -> tuple[Complaint, bool]:
        """Reopen within the window; later, open a new complaint linked to the old one. True when new."""
        complaint = await self.repo.get(complaint_id)
        if complaint is None:
            raise NotFound(complaint_id)
        now = self.now()
        if complaint.status in domain.REOPENABLE and not domain.can_reopen(complaint, now, self.rules):
            return await self.submit(complaint.customer_id, domain.linked_fields(complaint), complaint_id=None,
                                     source=f"reopen/{complaint_id}/{complaint.reopen_count}", opened_at=now,
                                     linked_complaint_id=complaint_id)
        changed = await self.change(
            complaint_id, lambda c, t: domain.reopen(c, now=t, rules=self.rules, reason=reason))
        return changed, False

    async def erase_customer(self, customer_id: str) -> int:
        ids = await self.repo.ids_of_customer(customer_id)
        for complaint_id in ids:
            await self.change(complaint_id, lambda c, _t: (domain.erase_personal_text(c), []))
        return len(ids)

    async def flush(self, complaint_id: str) -> None:
        async with self._lock(complaint_id):
            loaded = await self.repo.load(complaint_id)
            if loaded and loaded[1]:
                await self._publish(*loaded, None)

    def _render(self, complaint: Complaint, emits: list[Emit]) -> list[str]:
        now = self.now()
        out = []
        for position, emit in enumerate(emits):
            event_type = f"complaint.{emit.kind}"
            event_id = uuid.uuid5(NAMESPACE, f"{complaint.complaint_id}/{complaint.revision}/{position}/{event_type}")
            data = ComplaintEventData(
                complaint_id=complaint.complaint_id, status=complaint.status, priority=complaint.priority,
                category=complaint.category, channel=complaint.channel, severity=complaint.severity,
                complexity=complaint.complexity, customer_tier=complaint.customer_tier,
                first_response_due_at=complaint.first_response_due_at, update_due_at=complaint.update_due_at,
                resolution_due_at=complaint.resolution_due_at, escalation_level=complaint.escalation_level,
                assignee=complaint.assignee, sla_policy=complaint.sla_policy, sla_target=emit.sla_target,
                feedback_score=complaint.feedback[-1].score if complaint.feedback else None,
                linked_complaint_id=complaint.linked_complaint_id, changes=emit.changes)
            event = EVENT_TYPES[event_type].model_validate(
                {"id": str(event_id), "source": SOURCE, "type": event_type, "subject": complaint.customer_id,
                 "time": now, "data": data}, context={"now": now})
            out.append(event.model_dump_json(exclude_none=True))
        return out

    async def _publish(self, complaint: Complaint, outbox: list[str], cause: CloudEvent | None) -> None:
        if not outbox:
            return
        await self._send(outbox, cause)
        await self.repo.clear_outbox(complaint.complaint_id, complaint.revision)

    async def _send(self, outbox: list[str], cause: CloudEvent | None) -> None:
        now = self.now()
        for raw in outbox:
            event = EVENT_TYPES[_type_of(raw)].model_validate_json(raw, context={"now": now})
            await publish_event(self.publisher, event, cause=cause)


def _type_of(raw: str) -> str:
    # The outbox holds serialized events; the type picks the model to read one back with.
    return str(json.loads(raw)["type"])
