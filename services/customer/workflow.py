"""The customer record's use cases, shared by the Kafka handlers and the HTTP API.

Each use case loads, asks the domain, persists and publishes. Profile writes are optimistic (the
stored version must not have moved); a conflict reloads and tries again. Every outbound event id
is derived from the change, so a retry republishes the same event.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

from shared.batch import Remembered
from shared.clock import Clock
from shared.contract.events import (
    CloudEvent,
    CustomerErased,
    CustomerErasedData,
    CustomerProfile,
    CustomerProfileChanged,
)
from shared.contract.topics import CRM_CUSTOMERS
from shared.kafka import Publisher
from shared.locks import KeyedLocks

from . import domain
from .repository import Repository, Stored

log = structlog.get_logger(__name__)
SOURCE = "carecrm/customer"
_ATTEMPTS = 5
_KNOWN_MAX = 200_000


class NotFound(LookupError):
    pass


class AlreadyExists(Exception):
    pass


class Erased(Exception):
    pass


class Conflict(Exception):
    """The profile kept changing under a writer: it gave up rather than overwrite."""


@dataclass(frozen=True)
class Cause:
    """Why a profile changes: the event or request id, where it came from, and who did it."""

    id: str
    at: datetime
    source: str
    actor: str
    event: CloudEvent | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", domain.store_precision(self.at))


class Workflow:
    def __init__(self, repo: Repository, publisher: Publisher, clock: Clock) -> None:
        self.repo = repo
        self.publisher = publisher
        self.clock = clock
        self._locks = KeyedLocks()
        # Customers that have a profile or were erased: a purchase of theirs needs no read. Safe to
        # remember and to share between instances, since neither ever goes back to "unknown".
        self._known: set[str] = set()
        # The profile this process last wrote for a customer: the next change of it starts from
        # there without a read. A stale one (another process wrote meanwhile) fails the versioned
        # write and the retry reads.
        self._written: Remembered[str, Stored] = Remembered()

    @contextlib.asynccontextmanager
    async def _serialised(self, customer_id: str) -> AsyncIterator[None]:
        # One change of a customer at a time in this process, so that a profile event can never be
        # published after the erasure (and tombstone) that overtook it.
        async with self._locks(customer_id):
            yield

    async def change(self, customer_id: str, changes: Mapping[str, Any], cause: Cause, *, activate: bool,
                     create: bool, once: bool = False) -> CustomerProfile:
        """Apply ``changes``; ``create`` makes a new active customer (or registers a prospect).
        ``once``: the cause is an event applied at most once, even after later changes (an intake
        event read again must not roll the profile back)."""
        async with self._serialised(customer_id):
            for attempt in range(_ATTEMPTS):
                if attempt == 0 and (written := self._written.get(customer_id)) is not None:
                    stored: Stored | None = written
                elif attempt == 0 and create and cause.event is not None and customer_id not in self._known:
                    # A registration of an id never seen: almost always new. Should a document be
                    # there after all, the write that expects none fails and the retry reads it.
                    stored = None
                else:
                    self._written.forget(customer_id)
                    stored = await self.repo.load(customer_id)
                profile = await self._try_change(customer_id, stored, changes, cause, activate=activate,
                                                 create=create, once=once)
                if profile is not None:
                    return profile
            raise Conflict(customer_id)

    async def _try_change(self, customer_id: str, stored: Stored | None, changes: Mapping[str, Any], cause: Cause,
                          *, activate: bool, create: bool, once: bool) -> CustomerProfile | None:
        """One optimistic attempt from ``stored``: the resulting profile, or ``None`` when another
        writer came first."""
        if stored is not None and stored.erased:
            raise Erased(customer_id)
        current = stored.profile if stored else None
        applied = stored.applied if stored else domain.Applied()
        if once and (cause.id, cause.at) in applied:
            assert current is not None
            if stored is not None and stored.last_cause == cause.id:
                await self._publish_profile(customer_id, current, cause)  # the earlier attempt may not have
            return current
        if current is None and not create:
            raise NotFound(customer_id)
        if create and current is not None and current.status == "active" and cause.event is None:
            raise AlreadyExists(customer_id)
        updated = domain.apply_changes(current, changes, at=cause.at, source=cause.source, activate=activate)
        now_applied = applied.plus(cause.id, cause.at) if once else None
        if updated is None:
            assert current is not None
            if now_applied is not None:  # nothing changed, but a later replay of it must still change nothing
                await self.repo.note_applied(customer_id, now_applied)
                self._written.put(customer_id, replace(stored, applied=now_applied))  # type: ignore[arg-type]
            return current
        await self._record_consents(customer_id, current, updated, cause)
        if not await self.repo.save(customer_id, updated, expected_version=current.version if current else None,
                                    cause=cause.id, applied=now_applied):
            return None
        self._written.put(customer_id, Stored(customer_id, updated, updated.status, cause.id, None,
                                              applied=now_applied or applied))
        await self._publish_profile(customer_id, updated, cause)
        self._remember(customer_id)
        log.info("customer_profile_changed", customer_id=customer_id, version=updated.version,
                 status=updated.status, fields=sorted(changes))
        return updated

    async def ensure_prospect(self, customer_id: str, cause: Cause) -> None:
        """A purchase of an unknown customer: create a stub marked by the purchase's source."""
        if customer_id in self._known:
            return
        async with self._serialised(customer_id):
            seen = await self.repo.peek(customer_id)
            status = seen.get("status") if seen else None
            if status is not None:
                if status != "erased" and seen and seen.get("last_cause") == cause.id:
                    # This purchase made the stub; its publication may not have happened.
                    stored = await self.repo.load(customer_id)
                    if stored is not None and stored.profile is not None:
                        await self._publish_profile(customer_id, stored.profile, cause)
                self._remember(customer_id)
                return
            stub = domain.new_prospect(source=cause.source, at=cause.at)
            if await self.repo.save(customer_id, stub, expected_version=None, cause=cause.id):
                await self._publish_profile(customer_id, stub, cause)
                log.info("prospect_created", customer_id=customer_id)
                self._remember(customer_id)

    def unseen(self, customer_id: str) -> bool:
        """Whether this process knows of no profile of ``customer_id`` (so it is almost always new)."""
        return customer_id not in self._known and self._written.get(customer_id) is None

    async def create_many(self, new: Sequence[tuple[str, Mapping[str, Any], Cause, bool]]) -> set[str]:
        """Customers never seen, ``(id, changes, cause, registered)``: a registration (applied once,
        as ``change`` does) or a purchase's prospect. Their consents in one insert, their profiles in
        another and their changes in one publish, instead of a read and writes each; the ids made.
        One whose changes the domain refuses, or that has a document after all, is not made: the
        caller applies it through ``change`` or ``ensure_prospect``."""
        made: dict[str, tuple[CustomerProfile, Cause, domain.Applied | None]] = {}
        for customer_id, changes, cause, registered in new:
            if not registered:
                made[customer_id] = (domain.new_prospect(source=cause.source, at=cause.at), cause, None)
                continue
            try:
                profile = domain.apply_changes(None, changes, at=cause.at, source=cause.source, activate=True)
            except Exception:  # noqa: BLE001 - the one-at-a-time path rejects it with its reason
                continue
            if profile is not None:
                made[customer_id] = (profile, cause, domain.Applied().plus(cause.id, cause.at))
        async with contextlib.AsyncExitStack() as held:
            for customer_id in sorted(made):  # one order for every holder of several locks
                await held.enter_async_context(self._serialised(customer_id))
            # Each consent ledger entry before its profile, as ``change`` writes them.
            await self.repo.record_consents([entry for customer_id, (profile, cause, _) in made.items()
                                             for entry in self._consent_entries(customer_id, None, profile, cause)])
            created = await self.repo.create_many([(customer_id, profile, cause.id, applied)
                                                   for customer_id, (profile, cause, applied) in made.items()])
            for customer_id in created:
                profile, cause, applied = made[customer_id]
                self._written.put(customer_id, Stored(customer_id, profile, profile.status, cause.id, None,
                                                      applied=applied or domain.Applied()))
                self._remember(customer_id)
            await self.publisher.publish([self._profile_event(customer_id, made[customer_id][0], made[customer_id][1])
                                          for customer_id in created],
                                         causes=lambda event: made[event.subject][1].event)
        for customer_id in sorted(created):  # the same record of each change as ``change`` leaves
            profile = made[customer_id][0]
            log.info("customer_profile_changed", customer_id=customer_id, version=profile.version,
                     status=profile.status, created=True)
        return created

    def _remember(self, customer_id: str) -> None:
        if len(self._known) >= _KNOWN_MAX:
            self._known.clear()
        self._known.add(customer_id)

    async def erase(self, customer_id: str, *, at: datetime, reason: str | None) -> None:
        """Remove the personal data, announce it, then drop the key from the compacted topic."""
        async with self._serialised(customer_id):
            self._written.forget(customer_id)
            stored = await self.repo.load(customer_id)
            if stored is None or (stored.profile is None and not stored.erased):
                raise NotFound(customer_id)
            erased_at = stored.erased_at or at
            if not stored.erased:
                assert stored.profile is not None
                await self.repo.erase(customer_id, at=erased_at, version=stored.profile.version + 1)
            event = CustomerErased(id=domain.erased_event_id(customer_id), source=SOURCE, subject=customer_id,
                                   time=erased_at, data=CustomerErasedData(erased_at=erased_at, reason=reason))
            await self.publisher.publish([event])
            await self.publisher.tombstone(CRM_CUSTOMERS, customer_id)
            log.info("customer_erased", customer_id=customer_id)

    async def _record_consents(self, customer_id: str, before: CustomerProfile | None, after: CustomerProfile,
                               cause: Cause) -> None:
        # Written before the profile: a crash in between replays into the same ledger ids.
        await self.repo.record_consents(self._consent_entries(customer_id, before, after, cause))

    @staticmethod
    def _consent_entries(customer_id: str, before: CustomerProfile | None, after: CustomerProfile,
                         cause: Cause) -> list[dict[str, Any]]:
        return [{
            "_id": domain.event_id("consent", customer_id, cause.id, change.key),
            "customer_id": customer_id, "consent": change.key, "kind": domain.CONSENT_KINDS[change.key],
            "granted": change.granted, "at": cause.at, "source": cause.source, "actor": cause.actor,
            "version": after.version,
        } for change in domain.consent_changes(before.consents if before else None, after.consents)]

    async def _publish_profile(self, customer_id: str, profile: CustomerProfile, cause: Cause) -> None:
        await self.publisher.publish([self._profile_event(customer_id, profile, cause)], cause=cause.event)

    @staticmethod
    def _profile_event(customer_id: str, profile: CustomerProfile, cause: Cause) -> CustomerProfileChanged:
        return CustomerProfileChanged(
            id=domain.profile_event_id(customer_id, profile.version), source=SOURCE, subject=customer_id,
            time=profile.updated_at or cause.at, data=profile)

    async def load_active(self, customer_id: str) -> Stored:
        stored = await self.repo.load(customer_id)
        if stored is not None and stored.erased:
            raise Erased(customer_id)
        if stored is None or stored.profile is None:
            raise NotFound(customer_id)
        return stored
