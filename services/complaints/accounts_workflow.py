"""Applies the account rules to stored accounts and tasks, and publishes what they cause.

The same middle layer as ``workflow``: read, run a pure rule (``accounts``, ``visits``) with the
clock's ``now``, write the result with its events (the outbox) at the revision read, publish, clear
the outbox; a lost race reads again. Changes of one customer's account (or of one task) take turns
on a lock in this process. Event ids are uuid5 of the account's customer and revision (of the task's
id), so a retry or a republished outbox repeats the same ids; an outbox a crash left behind is
published by ``run`` once it has stayed unsent for a whole pass.

The rule applies to customers in the order their events were read, one at a time: each pick reads
the managers' loads after the previous pick was written, so the same input picks the same people.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import structlog

from shared.clock import Clock
from shared.contract import EVENT_TYPES
from shared.contract.events import (
    AccountManagerChanged,
    AccountManagerChangedData,
    CloudEvent,
    CustomerProfile,
    CustomerProfileChanged,
    InteractionData,
    InteractionRecorded,
    ReturnVisitDue,
)
from shared.contract.topics import CRM_ACCOUNT_MANAGERS
from shared.kafka import Publisher
from shared.locks import KeyedLocks

from . import accounts, visits
from .accounts import Account, AccountRule
from .accounts_repository import AccountsRepository
from .calendar import BusinessCalendar
from .domain import DomainError
from .repository import Repository
from .staff import Directory

log = structlog.get_logger(__name__)
NAMESPACE = uuid.UUID("3f0d6c1e-8b52-4a7e-9a65-2d9c41e7b0a2")
SOURCE = "carecrm/complaints"
MAX_RACES = 20
#: Profile writes of a batch in flight at once.
PROFILES_IN_FLIGHT = 8


class NotFound(LookupError):
    pass


class AccountsWorkflow:
    def __init__(self, repo: AccountsRepository, complaints: Repository, directory: Directory, rule: AccountRule,
                 clock: Clock, publisher: Publisher, calendar: BusinessCalendar, return_visit_days: float) -> None:
        self.repo = repo
        #: The complaints' store, for the customer's tier (kept from the classification topic).
        self.complaints = complaints
        self.directory = directory
        self.rule = rule
        self.clock = clock
        self.publisher = publisher
        self.calendar = calendar
        self.return_visit_days = return_visit_days
        self._lock = KeyedLocks()
        self._pending_last_pass: set[tuple[str, str, int]] = set()

    # --- account managers ------------------------------------------------------------------------

    async def profiles_changed(self, events: Iterable[CustomerProfileChanged]) -> None:
        """Keep the fields the rule reads (each customer's newest, a few customers at a time); then a
        customer whose needs qualify gets a manager."""
        newest = {e.subject: e.data for e in events}
        gate = asyncio.Semaphore(PROFILES_IN_FLIGHT)

        async def put(customer_id: str, data: CustomerProfile) -> None:
            async with gate:
                await self.repo.put_profile(customer_id, {"needs": data.needs, "region": data.region,
                                                          "industry": data.industry}, data.version)

        await asyncio.gather(*(put(*item) for item in newest.items()))
        for customer_id, data in newest.items():
            if data.needs is not None and data.needs in self.rule.needs:
                await self.apply_rule(customer_id)

    async def tiers_changed(self, tiers: Iterable[tuple[str, str | None]]) -> None:
        """Customers whose tier qualifies get a manager."""
        for customer_id, tier in tiers:
            if tier is not None and tier in self.rule.tiers:
                await self.apply_rule(customer_id, tier)

    async def apply_rule(self, customer_id: str, tier: str | None = None) -> Account:
        """The account after the rule: a manager for a customer who qualifies and has none."""
        async def operation(account: Account, now: datetime) -> Account | None:
            if accounts.current_manager(self.directory, account) is not None:
                return None
            known = tier if tier is not None else await self.complaints.tier(customer_id)
            loads = await self.repo.loads(m.id for m in self.directory.account_managers())
            return accounts.by_rule(account, known, self.rule, self.directory, loads, now)

        return await self._change(customer_id, operation)

    async def set_manager(self, customer_id: str, manager_id: str | None, *, actor: str, reason: str) -> Account:
        """A person's change of the manager (None: no manager); ``DomainError`` for someone who is
        not an account manager of the directory."""
        member = self.directory.member(manager_id)
        if manager_id is not None and (member is None or not member.account_manager):
            raise DomainError("not_an_account_manager", f"{manager_id} is not an account manager of the directory")

        async def operation(account: Account, now: datetime) -> Account | None:
            return accounts.assign(account, member, actor=actor, reason=reason, now=now)

        return await self._change(customer_id, operation)

    async def account(self, customer_id: str) -> Account:
        return (await self.repo.load(customer_id))[0]

    async def _change(self, customer_id: str, operation: Any) -> Account:
        async with self._lock(customer_id):
            for _ in range(MAX_RACES):
                before, outbox = await self.repo.load(customer_id)
                now = self.clock.now()
                after = await operation(before, now)
                if after is None:
                    if outbox:  # a change a crash left unpublished
                        await self._publish_account(customer_id, before.revision, outbox)
                    return before
                pending = [*outbox, _manager_event(after, now).model_dump_json(exclude_none=True)]
                if await self.repo.write_change(after, pending, expected_revision=before.revision):
                    await self._publish_account(customer_id, after.revision, pending)
                    log.info("account_manager_changed", customer_id=customer_id, manager=after.manager,
                             revision=after.revision, actor=after.history[-1].actor)
                    return after
            raise RuntimeError(f"the account of {customer_id} kept changing under {MAX_RACES} attempts")

    async def _publish_account(self, customer_id: str, revision: int, outbox: list[str]) -> None:
        await self._send(outbox)
        await self.repo.clear_outbox(customer_id, revision)

    async def erase(self, customer_id: str) -> None:
        """The account goes, with its key on the compacted topic; tasks lose their summaries."""
        async with self._lock(customer_id):
            await self.repo.delete(customer_id)
            await self.repo.erase_tasks(customer_id)
            await self.publisher.tombstone(CRM_ACCOUNT_MANAGERS, customer_id)

    # --- return visits ---------------------------------------------------------------------------

    async def visit_due(self, event: ReturnVisitDue) -> visits.Task:
        """The return visit as a task in the account manager's queue, once per visit id; a customer
        without an account manager is refused (``DomainError`` ``not_managed``): nobody would visit them."""
        data = event.data
        manager = accounts.current_manager(self.directory, await self.account(event.subject))
        if manager is None:
            raise DomainError("not_managed", "the customer has no account manager of the directory")
        task = visits.new_visit(visit_id=data.visit_id, customer_id=event.subject, manager=manager.id,
                                due_on=data.due_on, cadence_days=data.cadence_days, at=event.time,
                                calendar=self.calendar, days=self.return_visit_days)
        if await self.repo.add_task(task):
            log.info("return_visit_due", task_id=task.task_id, assignee=task.assignee)
            return task
        loaded = await self.repo.load_task(task.task_id)
        assert loaded is not None, "tasks are never deleted"
        if loaded[0].customer_id != event.subject:
            raise DomainError("task_id_taken", "the visit id belongs to another customer")
        return loaded[0]

    async def task(self, task_id: str) -> visits.Task:
        loaded = await self.repo.load_task(task_id)
        if loaded is None:
            raise NotFound(task_id)
        return loaded[0]

    async def record_outcome(self, task_id: str, *, outcome: visits.Outcome, channel: visits.VisitChannel,
                             summary: str, satisfaction: int | None, actor: str) -> visits.Task:
        """Close the task with its outcome and publish it as a ``return_visit`` interaction."""
        async with self._lock(f"task/{task_id}"):
            for _ in range(MAX_RACES):
                loaded = await self.repo.load_task(task_id)
                if loaded is None:
                    raise NotFound(task_id)
                before, outbox = loaded
                now = self.clock.now()
                after = visits.record_outcome(before, outcome=outcome, channel=channel, summary=summary,
                                              satisfaction=satisfaction, actor=actor, now=now)
                if after is None:
                    if outbox:
                        await self._publish_task(task_id, before.revision, outbox)
                    return before
                pending = [*outbox, _interaction(after, now).model_dump_json(exclude_none=True)]
                if await self.repo.replace_task(after, pending, expected_revision=before.revision):
                    await self._publish_task(task_id, after.revision, pending)
                    log.info("return_visit_done", task_id=task_id, outcome=outcome)
                    return after
            raise RuntimeError(f"task {task_id} kept changing under {MAX_RACES} attempts")

    async def _publish_task(self, task_id: str, revision: int, outbox: list[str]) -> None:
        await self._send(outbox)
        await self.repo.clear_task_outbox(task_id, revision)

    # --- outboxes --------------------------------------------------------------------------------

    async def run(self, interval_s: float) -> None:
        while True:
            await self.republish()
            await asyncio.sleep(interval_s)

    async def republish(self) -> int:
        """Publish the outboxes still unsent at the same revision a whole pass later (a crash
        between a write and its publish); how many."""
        accounts_, tasks = await asyncio.gather(self.repo.pending_accounts(), self.repo.pending_tasks())
        pending = {("account", key, revision): outbox for key, revision, outbox in accounts_}
        pending |= {("task", key, revision): outbox for key, revision, outbox in tasks}
        stale = set(pending) & self._pending_last_pass
        for kind, key, revision in sorted(stale):
            log.info("outbox_republished", kind=kind, key=key)
            lock = self._lock(key if kind == "account" else f"task/{key}")
            async with lock:
                publish = self._publish_account if kind == "account" else self._publish_task
                await publish(key, revision, pending[(kind, key, revision)])
        self._pending_last_pass = set(pending)
        return len(stale)

    async def _send(self, outbox: list[str]) -> None:
        now = self.clock.now()
        await self.publisher.publish([_event(raw, now) for raw in outbox])


def _event(raw: str, now: datetime) -> CloudEvent:
    # The outbox holds serialized events; the type picks the model to read one back with.
    return EVENT_TYPES[str(json.loads(raw)["type"])].model_validate_json(raw, context={"now": now})


def _manager_event(account: Account, now: datetime) -> AccountManagerChanged:
    change = account.history[-1]
    data = AccountManagerChangedData(
        manager_id=change.manager, manager_name=account.manager_name, previous_manager_id=change.previous,
        reason=change.reason, actor=change.actor, changed_at=change.at, revision=change.revision)
    return AccountManagerChanged(id=str(uuid.uuid5(NAMESPACE, f"{account.customer_id}/{change.revision}")),
                                 source=SOURCE, subject=account.customer_id, time=now, data=data)


def _interaction(task: visits.Task, now: datetime) -> InteractionRecorded:
    data = InteractionData(interaction_id=task.task_id, kind="return_visit", channel=task.channel or "visit",
                           direction="outbound", summary=task.summary, satisfaction=task.satisfaction)
    return InteractionRecorded(id=str(uuid.uuid5(NAMESPACE, f"interaction/{task.task_id}")), source=SOURCE,
                               subject=task.customer_id, time=now, data=data)
