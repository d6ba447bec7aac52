"""Applies the domain's operations to stored complaints and publishes what they cause.

Each change is: read the complaint (or take the one the caller just read), run a pure domain
operation with the clock's ``now``, write the result and its events (the outbox) at the revision
read, publish, clear the outbox. A lost race is retried from a fresh read. Intake opens complaints in
bulk the same way: insert with the outbox, publish, clear. Event ids are uuid5 of complaint id,
revision and position, so a retry or a republished outbox repeats the same ids.

Within one process, changes of one complaint also take turns on a lock: FerretDB v1 does not apply
the revision filter of a replace atomically, so two concurrent writers (an HTTP transition and a
scheduler tick) could both succeed and the later one silently drop the earlier one's change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from shared.clock import Clock
from shared.contract import EVENT_TYPES, CloudEvent
from shared.contract.events import ComplaintEventData, StaffAlertData
from shared.kafka import Publisher

from . import assignment, domain, staff
from .domain import Complaint, DomainError, Emit, Rules
from .repository import Repository
from .staff import Directory

log = structlog.get_logger(__name__)
NAMESPACE = uuid.UUID("0b7f6f0e-3c55-4bde-9d8f-5f0c2f7c1a01")
SOURCE = "carecrm/complaints"
MAX_RACES = 20

Operation = Callable[[Complaint, datetime], tuple[Complaint, list[Emit]]]


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Submission:
    """One complaint to open; ``complaint_id`` None derives it from customer and source."""

    customer_id: str
    fields: dict[str, Any]
    complaint_id: str | None
    source: str
    opened_at: datetime
    cause: CloudEvent | None = None
    linked_complaint_id: str | None = None


class Workflow:
    def __init__(self, repo: Repository, rules: Rules, clock: Clock, publisher: Publisher,
                 directory: Directory | None = None,
                 account_managers: Callable[[str], Awaitable[str | None]] | None = None) -> None:
        self.repo = repo
        self.rules = rules
        self.clock = clock
        self.publisher = publisher
        #: The staff directory: who new complaints go to, whom escalations reach. None: nobody.
        self.directory = directory
        #: A customer's account manager (``accounts_repository``): new complaints go to them first.
        self.account_managers = account_managers
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
        [result] = await self.submit_many([Submission(customer_id, fields, complaint_id, source, opened_at, cause,
                                                      linked_complaint_id)])
        if isinstance(result, DomainError):
            raise result
        return result

    async def submit_many(self, submissions: list[Submission]) -> list[tuple[Complaint, bool] | DomainError]:
        """Open each complaint once, in bulk: per complaint one read of its id and, when it is new, of
        its customer's tier (one per customer), all at once; then one insert for all new ones.

        The opening events are published before the complaints are stored: an event's id depends only
        on the complaint id, so a retry after a crash in between repeats the same event, and no second
        write is needed to clear an outbox. An id already stored is checked to be the same
        customer's, and an outbox it still holds is published.
        """
        ids = [s.complaint_id or f"CMP-{uuid.uuid5(NAMESPACE, f'{s.customer_id}/{s.source}')}" for s in submissions]
        first: dict[str, int] = {}
        for position, complaint_id in enumerate(ids):
            first.setdefault(complaint_id, position)
        stored = dict(zip(first, await asyncio.gather(*map(self.repo.load, first)), strict=True))
        new = [complaint_id for complaint_id, loaded in stored.items() if loaded is None]
        customers = sorted({submissions[first[k]].customer_id for k in new})
        read, managers = await asyncio.gather(asyncio.gather(*map(self.repo.tier, customers)),
                                              self._account_managers(customers))
        tiers = dict(zip(customers, read, strict=True))
        opened: dict[str, Complaint] = {}
        outboxes: list[tuple[list[str], CloudEvent | None]] = []
        now = self.now()
        loads = await self._loads(now, {submissions[first[k]].fields["category"] for k in new})
        for complaint_id in new:
            s = submissions[first[complaint_id]]
            complaint, emits = domain.open_complaint(
                complaint_id=complaint_id, customer_id=s.customer_id, fields=s.fields, tier=tiers[s.customer_id],
                opened_at=s.opened_at, rules=self.rules, source=s.source, linked_complaint_id=s.linked_complaint_id)
            if self.directory is not None:
                complaint = assignment.route_new(complaint, self.directory, now, loads,
                                                 managers.get(s.customer_id))
                if complaint.assignee is not None:  # the batch's own complaints count towards the next pick
                    loads[complaint.assignee] = loads.get(complaint.assignee, 0) + 1
            opened[complaint_id] = complaint
            outboxes.append((self._render(complaint, emits), s.cause))
        await asyncio.gather(*(self._send(outbox, cause) for outbox, cause in outboxes))
        for complaint_id in await self.repo.insert_new([(c, []) for c in opened.values()]):
            del opened[complaint_id]  # opened meanwhile by another writer: read below like any stored one
        for complaint in opened.values():
            log.info("complaint_opened", complaint_id=complaint.complaint_id, priority=complaint.priority,
                     sla_policy=complaint.sla_policy)
        results: list[tuple[Complaint, bool] | DomainError] = []
        for position, (s, complaint_id) in enumerate(zip(submissions, ids, strict=True)):
            if complaint_id in opened and first[complaint_id] == position:
                results.append((opened[complaint_id], True))
            else:  # stored before (read above), or a repeat within these submissions (read again)
                read = stored.get(complaint_id) if first[complaint_id] == position else None
                results.append(await self._existing(complaint_id, s.customer_id, s.cause, read))
        return results

    async def _existing(self, complaint_id: str, customer_id: str, cause: CloudEvent | None,
                        loaded: tuple[Complaint, list[str]] | None) -> tuple[Complaint, bool] | DomainError:
        async with self._lock(complaint_id):
            loaded = loaded or await self.repo.load(complaint_id)
            assert loaded is not None, "complaints are never deleted"
            existing, outbox = loaded
            if existing.customer_id != customer_id:
                return DomainError("complaint_id_taken", "the complaint id belongs to another customer")
            await self._publish(existing, outbox, cause)  # a retry after a crash between write and publish
            return existing, False

    async def change(self, complaint_id: str, operation: Operation, *, cause: CloudEvent | None = None,
                     loaded: tuple[Complaint, list[str]] | None = None) -> Complaint:
        """``loaded``: the complaint as just read by the caller, tried first (a stale one loses the
        race at its revision and is read again)."""
        async with self._lock(complaint_id):
            return await self._change(complaint_id, operation, cause, loaded)

    async def _change(self, complaint_id: str, operation: Operation, cause: CloudEvent | None,
                      loaded: tuple[Complaint, list[str]] | None) -> Complaint:
        for _ in range(MAX_RACES):
            loaded = loaded or await self.repo.load(complaint_id)
            if loaded is None:
                raise NotFound(complaint_id)
            before, outbox = loaded
            now = self.now()
            after, emits = operation(before, now)
            if self.directory is not None:
                after, emits = assignment.staffed(after, emits, self.directory, now)
            if not emits and after == before:
                return before
            after.revision = before.revision + 1
            pending = outbox + self._render(after, emits)
            if await self.repo.replace(after, pending, expected_revision=before.revision):
                await self._publish(after, pending, cause)
                return after
            loaded = None
        raise RuntimeError(f"complaint {complaint_id} kept changing under {MAX_RACES} attempts")

    async def change_many(self, loaded: list[tuple[Complaint, list[str]]], operation: Operation) -> int:
        """``operation`` on each complaint as just read, in bulk: a few write commands for all of
        them, their events published together, their outboxes cleared together. What another
        process changed meanwhile goes the single way (``change``), which reads it again. Returns
        how many complaints the operation changed."""
        written: list[tuple[Complaint, list[str], int]] = []
        raced: list[str] = []
        async with contextlib.AsyncExitStack() as held:
            for complaint_id in sorted({c.complaint_id for c, _ in loaded}):  # one order: no deadlock
                await held.enter_async_context(self._lock(complaint_id))
            now = self.now()
            for before, outbox in loaded:
                after, emits = operation(before, now)
                if self.directory is not None:
                    after, emits = assignment.staffed(after, emits, self.directory, now)
                if not emits and after == before:
                    continue
                after.revision = before.revision + 1
                written.append((after, outbox + self._render(after, emits), before.revision))
            token = uuid.uuid4().hex
            if await self.repo.replace_many(written, token) < len(written):
                # Some lost their revision to another process: those not holding this write.
                ours = await self.repo.written_with([c.complaint_id for c, _, _ in written], token)
                raced = [c.complaint_id for c, _, _ in written if c.complaint_id not in ours]
                written = [w for w in written if w[0].complaint_id in ours]
            await asyncio.gather(*(self._send(outbox, None) for _, outbox, _ in written if outbox))
            await self.repo.clear_outboxes((c.complaint_id, c.revision) for c, outbox, _ in written if outbox)
        for complaint_id in raced:
            await self.change(complaint_id, operation)
        return len(written) + len(raced)

    async def _account_managers(self, customers: list[str]) -> dict[str, str | None]:
        """Each customer's account manager, where there are account managers: one lookup each."""
        if self.account_managers is None or self.directory is None or not self.directory.account_managers():
            return {}
        return dict(zip(customers, await asyncio.gather(*map(self.account_managers, customers)), strict=True))

    async def _loads(self, now: datetime, categories: set[str]) -> dict[str, int]:
        """Open complaints of each agent on duty now in the teams that new complaints of these
        categories go to, where the team assigns to agents: one indexed lookup per agent."""
        directory = self.directory
        if directory is None or not categories:
            return {}
        teams = {directory.team_for(category) for category in categories} & set(staff.agent_teams(directory))
        agents = [m.id for team in sorted(teams) for m in staff.on_duty_agents(directory, team, now)]
        return dict(zip(agents, await asyncio.gather(*map(self.repo.open_count, agents)), strict=True))

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
            model = StaffAlertData if emit.alert is not None else ComplaintEventData
            extra = {"alert": emit.alert} if emit.alert is not None else {}
            data = model(
                complaint_id=complaint.complaint_id, status=complaint.status, priority=complaint.priority,
                category=complaint.category, channel=complaint.channel, severity=complaint.severity,
                complexity=complaint.complexity, customer_tier=complaint.customer_tier,
                first_response_due_at=complaint.first_response_due_at, update_due_at=complaint.update_due_at,
                resolution_due_at=complaint.resolution_due_at, escalation_level=complaint.escalation_level,
                assignee=complaint.assignee, team=complaint.team, sla_policy=complaint.sla_policy,
                sla_target=emit.sla_target, feedback_score=complaint.feedback[-1].score if complaint.feedback else None,
                linked_complaint_id=complaint.linked_complaint_id, changes=emit.changes, **extra)
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
        # In order, one key: the producer keeps one complaint's events in their sequence.
        await self.publisher.publish([EVENT_TYPES[_type_of(raw)].model_validate_json(raw, context={"now": now})
                                      for raw in outbox], cause=cause)


def _type_of(raw: str) -> str:
    # The outbox holds serialized events; the type picks the model to read one back with.
    return str(json.loads(raw)["type"])
