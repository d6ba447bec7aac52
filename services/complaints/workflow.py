"""Applies the domain's operations to stored complaints and publishes what they cause.

Each change is: read the complaint (or take the one the caller just read), run a pure domain
operation with the clock's ``now``, write the result and its events (the outbox) at the revision
read, publish, clear the outbox. A lost race is retried from a fresh read. Bulk writes (intake, the
scheduler's ticks) keep the events of all their complaints in one document instead (see ``_held``).
Event ids are uuid5 of complaint id, revision and position, so a retry or a republished outbox
repeats the same ids.

Within one process, changes of one complaint also take turns on a lock: FerretDB v1 does not apply
the revision filter of a replace atomically, so two concurrent writers (an HTTP transition and a
scheduler tick) could both succeed and the later one silently drop the earlier one's change.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from shared.clock import Clock
from shared.contract import EVENT_TYPES, CloudEvent
from shared.contract.events import ComplaintEventData, StaffAlertData
from shared.contract.topics import CRM_COMPLAINTS
from shared.kafka import Publisher
from shared.locks import KeyedLocks

from . import assignment, domain, staff
from .domain import Complaint, DomainError, Emit, Rules
from .repository import CLOSED_STATES, Repository, Unsent
from .staff import Directory

log = structlog.get_logger(__name__)
NAMESPACE = uuid.UUID("0b7f6f0e-3c55-4bde-9d8f-5f0c2f7c1a01")
SOURCE = "carecrm/complaints"
MAX_RACES = 20
#: Seconds the agents' loads read for routing new complaints stay in use. Meanwhile this process
#: counts in them what it routes, reassigns and closes itself; what other processes do shows at the
#: next read. Read for every intake batch, they read every open complaint of the agents each time.
LOADS_FOR_S = 30.0

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
        self._lock = KeyedLocks()  # one change of a complaint at a time in this process
        #: Tokens of this process's bulk writes whose events are being published right now.
        self._in_flight: set[str] = set()
        #: Open complaints per agent, as read at ``_loads_read`` (``time.monotonic``) and counted since.
        self._agent_loads: dict[str, int] = {}
        self._loads_read = -LOADS_FOR_S

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
        """Open each complaint once, in bulk: one read of the tier of each customer, all at once;
        then the events held (``_held``), one insert for all complaints, and the events of those
        the insert opened published. An id already stored (the insert says which) is read and
        checked to be the same customer's, and an outbox it still holds is published.
        """
        ids = [s.complaint_id or f"CMP-{uuid.uuid5(NAMESPACE, f'{s.customer_id}/{s.source}')}" for s in submissions]
        first: dict[str, int] = {}
        for position, complaint_id in enumerate(ids):
            first.setdefault(complaint_id, position)
        customers = sorted({submissions[p].customer_id for p in first.values()})
        read, managers = await asyncio.gather(asyncio.gather(*map(self.repo.tier, customers)),
                                              self._account_managers(customers))
        tiers = dict(zip(customers, read, strict=True))
        opened: dict[str, Complaint] = {}
        events: list[Unsent] = []
        causes: dict[str, CloudEvent | None] = {}
        now = self.now()
        loads = await self._loads(now, {submissions[p].fields["category"] for p in first.values()})
        for complaint_id, position in first.items():
            s = submissions[position]
            complaint, emits = domain.open_complaint(
                complaint_id=complaint_id, customer_id=s.customer_id, fields=s.fields, tier=tiers[s.customer_id],
                opened_at=s.opened_at, rules=self.rules, source=s.source, linked_complaint_id=s.linked_complaint_id)
            if self.directory is not None:
                complaint = assignment.route_new(complaint, self.directory, now, loads,
                                                 managers.get(s.customer_id))
                if complaint.assignee is not None:  # the batch's own complaints count towards the next pick
                    loads[complaint.assignee] = loads.get(complaint.assignee, 0) + 1
            opened[complaint_id] = complaint
            events.append((complaint_id, s.customer_id, 0, self._render(complaint, emits)))
            causes[complaint_id] = s.cause
        async with self._held(events) as token:
            taken = await self.repo.insert_new([(c, []) for c in opened.values()], token)
            await self._send_all([e for e in events if e[0] not in taken], causes)
        for complaint_id in taken:
            holder = opened.pop(complaint_id).assignee  # there before: read below like a repeat
            if holder in self._agent_loads:
                self._agent_loads[holder] -= 1
        for complaint in opened.values():
            log.info("complaint_opened", complaint_id=complaint.complaint_id, priority=complaint.priority,
                     sla_policy=complaint.sla_policy)
        results: list[tuple[Complaint, bool] | DomainError] = []
        for position, (s, complaint_id) in enumerate(zip(submissions, ids, strict=True)):
            if complaint_id in opened and first[complaint_id] == position:
                results.append((opened[complaint_id], True))
            else:
                results.append(await self._existing(complaint_id, s.customer_id, s.cause))
        return results

    async def _existing(self, complaint_id: str, customer_id: str,
                        cause: CloudEvent | None) -> tuple[Complaint, bool] | DomainError:
        async with self._lock(complaint_id):
            loaded = await self.repo.load(complaint_id)
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
                self._recount(before, after)
                await self._publish(after, pending, cause)
                return after
            loaded = None
        raise RuntimeError(f"complaint {complaint_id} kept changing under {MAX_RACES} attempts")

    async def change_many(self, loaded: list[tuple[Complaint, list[str]]], operation: Operation) -> int:
        """``operation`` on each complaint as just read, in bulk: their events held (``_held``), a
        few write commands for all complaints, their events published together. What another
        process changed meanwhile goes the single way (``change``), which reads it again. Returns
        how many complaints the operation changed."""
        written: list[tuple[Complaint, Complaint, list[str]]] = []  # before, after, events
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
                written.append((before, after, outbox + self._render(after, emits)))
            if not written:
                return 0
            events = [(c.complaint_id, c.customer_id, c.revision, outbox) for _, c, outbox in written if outbox]
            async with self._held(events) as token:
                if await self.repo.write_many([(before, after) for before, after, _ in written], token) < len(written):
                    # Some lost their revision to another process: those not holding this write.
                    ours = await self.repo.written_with([c.complaint_id for _, c, _ in written], token)
                    raced = [c.complaint_id for _, c, _ in written if c.complaint_id not in ours]
                    written = [w for w in written if w[1].complaint_id in ours]
                    events = [e for e in events if e[0] in ours]
                for before, after, _ in written:
                    self._recount(before, after)
                await self._send_all(events)
        for complaint_id in raced:
            await self.change(complaint_id, operation)
        return len(written) + len(raced)

    async def _account_managers(self, customers: list[str]) -> dict[str, str | None]:
        """Each customer's account manager, where there are account managers: one lookup each."""
        if self.account_managers is None or self.directory is None or not self.directory.account_managers():
            return {}
        return dict(zip(customers, await asyncio.gather(*map(self.account_managers, customers)), strict=True))

    @contextlib.asynccontextmanager
    async def _held(self, events: list[Unsent]) -> AsyncIterator[str]:
        """A bulk write's token, with its events kept in one document of their own from before the
        write until they are published: the complaints are written without an outbox, and nothing
        needs clearing on each of them afterwards. If the publish does not happen (a crash, the
        broker away), the document stays and ``resend`` publishes what the write stored."""
        token = uuid.uuid4().hex
        if not events:
            yield token
            return
        await self.repo.hold_unsent(token, events)
        self._in_flight.add(token)
        try:
            yield token
        finally:
            self._in_flight.discard(token)
        await self.repo.release_unsent(token)

    async def resend(self, token: str) -> int:
        """Publish what a bulk write of another process, or an earlier one of this process, left
        unsent, and release it; how many complaints' events it published. A complaint still
        holding that write, or changed again since (its events may have been stored with it), has
        them published; one the write never reached (stored at an earlier revision, or that
        revision by another writer) has not."""
        if token in self._in_flight:
            return 0
        due: list[Unsent] = []
        for entry in await self.repo.unsent_events(token):
            complaint_id, _, revision, _ = entry
            async with self._lock(complaint_id):
                state = await self.repo.write_state(complaint_id)
            if state is not None and (state[1] == token or state[0] > revision):
                due.append(entry)
        await self._send_all(due)
        await self.repo.release_unsent(token)
        return len(due)

    async def _loads(self, now: datetime, categories: set[str]) -> dict[str, int]:
        """Open complaints of each agent on duty now in the teams that new complaints of these
        categories go to, where the team assigns to agents: one indexed lookup per agent not read
        within ``LOADS_FOR_S``. The caller counts the complaints it routes into the answer."""
        directory = self.directory
        if directory is None or not categories:
            return {}
        if time.monotonic() - self._loads_read > LOADS_FOR_S:
            self._agent_loads = {}
            self._loads_read = time.monotonic()
        teams = {directory.team_for(category) for category in categories} & set(staff.agent_teams(directory))
        agents = [m.id for team in sorted(teams) for m in staff.on_duty_agents(directory, team, now)]
        unread = [agent for agent in agents if agent not in self._agent_loads]
        self._agent_loads.update(zip(unread, await asyncio.gather(*map(self.repo.open_count, unread)), strict=True))
        return self._agent_loads

    def _recount(self, before: Complaint, after: Complaint) -> None:
        """The agents' loads in step with a change this process wrote: who holds it open now."""
        held = before.assignee if before.status not in CLOSED_STATES else None
        holds = after.assignee if after.status not in CLOSED_STATES else None
        if held != holds:
            if held in self._agent_loads:
                self._agent_loads[held] -= 1
            if holds in self._agent_loads:
                self._agent_loads[holds] += 1

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
        await self._send_all([(complaint.complaint_id, complaint.customer_id, complaint.revision, outbox)],
                             {complaint.complaint_id: cause})
        await self.repo.clear_outbox(complaint.complaint_id, complaint.revision)

    async def _send_all(self, events: list[Unsent], causes: dict[str, CloudEvent | None] | None = None) -> None:
        """One publish for the events of many complaints, each complaint's in order under its
        customer's key (the producer keeps one key's records in sequence)."""
        if not events:
            return
        causes = causes or {}
        await self.publisher.publish_json(CRM_COMPLAINTS, [
            (customer_id, raw, causes.get(complaint_id))
            for complaint_id, customer_id, _, outbox in events for raw in outbox])
