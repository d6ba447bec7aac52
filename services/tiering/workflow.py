"""Tiering's workflow: a bounded in-memory working set of customers in front of the store.

Every path (Kafka batches, the scheduler, overrides, refreshes, reclassification) goes through
``_apply``: evaluate and publish the outbound events together. The new state revisions wait in
memory for the write-behind (``writebehind.py``), which writes them and then commits the Kafka
offsets of the batches they came from. After a crash the uncommitted records are read again and, the
ledger being keyed by natural ids and the event ids deterministic, give the same state and the
same events. When a batch fails, its customers are dropped from memory so that the retry starts
again from their last evaluated revision.
"""

from __future__ import annotations

import asyncio
import heapq
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.clock import Clock
from shared.contract import CloudEvent
from shared.contract.topics import CRM_CUSTOMER_TIERS
from shared.kafka import OutboundRecord, Publisher

from . import domain, outbound, reports
from .classification import classify
from .domain import Override
from .metrics import Cutoffs, Metrics, RuleViolation, add_entry, compute_cutoffs, compute_metrics, entry_for
from .policy import Policy, default_policy
from .repository import (
    CustomerState,
    Repository,
    doc_id,
    history_doc,
    snapshot_from_doc,
    state_doc,
)
from .settings import TieringSettings
from .writebehind import Position, Unsaved, WriteBehind, detached

log = structlog.get_logger(__name__)
#: Customers evaluated per send to the producer within one batch (see ``_apply``).
APPLY_CHUNK = 250
#: Standings a refresh looks at between two turns of the event loop: few customers move at a
#: refresh, so the scan rarely waits for a chunk, and 100,000 standings took seconds in one piece.
SCAN_YIELD = 2_000
#: Customers named per transition of a reclassification's answer: who would move, not everyone.
SAMPLE_PER_MOVE = 10
#: A refresh set off by the population moving waits at least this many times as long as the last
#: one took (from its start): refreshes take at most about a fifth of the service's time.
REFRESH_DUTY = 5
Reject = Callable[[CloudEvent, RuleViolation], Awaitable[None]]


@dataclass
class Outcome:
    changed_customers: int = 0
    events: int = 0


class Workflow:
    def __init__(self, settings: TieringSettings, repo: Repository, clock: Clock, registry: CollectorRegistry,
                 publisher: Publisher) -> None:
        self.settings = settings
        self.repo = repo
        self.clock = clock
        self.publisher = publisher
        self.cache: OrderedDict[str, CustomerState] = OrderedDict()
        #: Every stored customer's current revision, so that loading one is a single ``_id`` read.
        self.directory: dict[str, int] = {}
        #: Every stored customer's population standing, so that a refresh reads nothing but the
        #: customers whose class moves.
        self.standings: dict[str, domain.Standing] = {}
        #: Every stored customer's segment, and the segments report's tallies over them.
        self.segments = reports.Segments()
        #: Each customer's next evaluation time, and a heap of them for the scheduler.
        self.planned: dict[str, datetime] = {}
        self.due: list[tuple[datetime, str]] = []
        #: Customers whose snapshot this process has published. After a kill -9 the snapshot topic
        #: may hold a classification evaluated and published but never stored, which the records
        #: read again need not reach: a customer's first evaluation here publishes its snapshot.
        self.announced: set[str] = set()
        self.lock = asyncio.Lock()
        self.saving = WriteBehind(repo, self.lock, settings.flush_customers, registry)
        self._loading = asyncio.Lock()
        self.policy: Policy | None = None
        self.cutoffs: Cutoffs | None = None
        #: Since the cut-offs: customers who joined the active population and spend moved (base cents).
        self.joined = 0
        self.spend_moved = 0
        self._population_moved = False
        self._refreshed_at = float("-inf")
        #: How long the last refresh held the batches up (seconds).
        self._refresh_took = 0.0
        #: When the directory was last read, and when a consumer last gained partitions (monotonic):
        #: a gain after the read calls for reading it again (``_current``).
        self._read_at = float("-inf")
        self._gained_at = float("-inf")
        self.events_in = Counter("carecrm_tiering_events", "Inbound events applied to the ledger", ["kind"],
                                 registry=registry)
        self._change_counters: dict[tuple[str, str], Any] = {}
        self.changes_out = Counter("carecrm_tiering_tier_changes", "customer.tier.changed published",
                                   ["dimension", "direction"], registry=registry)
        self.rejected = Counter("carecrm_tiering_rejected", "Events refused by the tiering rules", ["error"],
                                registry=registry)
        self.batch_seconds = Histogram("carecrm_tiering_batch_seconds", "Time to apply one batch",
                                       registry=registry)

    async def ready(self) -> Policy:
        """Load the active policy, the cut-offs and the directory once, whoever asks first."""
        if self.policy is not None:
            return self.policy
        async with self._loading:
            return await self._load()

    async def _current(self) -> Policy:
        """``ready`` for whoever holds the lock, once the directory is re-read if partitions were
        gained since it was read (``partitions_gained``)."""
        if self.policy is not None and self._gained_at >= self._read_at:
            await self._resync_locked()
        return await self.ready()

    async def _load(self) -> Policy:
        if self.policy is None:
            # Before the first read: what another instance wrote until now is in what follows.
            self._read_at = time.monotonic()
            policy = await self.repo.active_policy()
            if policy is None:
                policy = default_policy()
                await self.repo.store_policy(policy, self.clock.now())
                await self.repo.activate_policy(policy.version, self.clock.now())
            self.cutoffs = await self.repo.latest_cutoffs()

            def keep(doc: Mapping[str, Any]) -> tuple[datetime | None, domain.Standing, reports.Segment]:
                metrics = Metrics.from_doc(doc.get("metrics") or {})
                return (doc.get("next_eval_at"), domain.standing(metrics, doc.get("held") or {}, doc.get("pending") or ()),
                        reports.segment_of_doc(doc, policy, metrics))

            for cid, (rev, (next_eval, standing, segment)) in (await self.repo.directory(keep)).items():
                self.directory[cid] = rev
                self.standings[cid] = standing
                self.segments.put(cid, segment)
                if next_eval is not None:
                    self.planned[cid] = next_eval
            self._rebuild_due()
            self.policy = policy
        return self.policy

    def _rebuild_due(self) -> None:
        self.due = [(when, cid) for cid, when in self.planned.items()]
        heapq.heapify(self.due)

    def _plan(self, customer_id: str, when: datetime | None) -> None:
        if when is None:
            self.planned.pop(customer_id, None)
        elif self.planned.get(customer_id) != when:
            self.planned[customer_id] = when
            heapq.heappush(self.due, (when, customer_id))
            if len(self.due) > 2 * len(self.planned) + 10_000:  # drop the superseded entries
                self._rebuild_due()

    async def classification(self, customer_id: str) -> dict[str, Any] | None:
        await self.ready()
        newest = self._newest(customer_id)
        if newest is not None:
            return newest.doc
        rev = self.directory.get(customer_id)
        return None if rev is None else await self.repo.state(customer_id, rev)

    async def tier_history(self, customer_id: str) -> list[dict[str, Any]]:
        return await self.repo.tier_history(customer_id, unsaved=self.saving.pending_history())

    def pending_docs(self) -> list[dict[str, Any]]:
        """The revisions not written yet (without their ledgers), older first."""
        return [u.doc for u in self.saving.pending()]

    async def current_docs(self) -> AsyncIterator[Mapping[str, Any]]:
        """Every customer's current revision (without the ledger) once: the stored ones, then those
        not written yet. Called under the lock, so that no batch moves a revision meanwhile."""
        pending = {doc["customer_id"]: doc for doc in self.pending_docs()}
        async for doc in self.repo.scan({"ledger": 0}):
            cid = doc["customer_id"]
            if cid not in pending and doc["rev"] == self.directory.get(cid):
                yield doc
        for doc in pending.values():
            yield doc

    def _newest(self, customer_id: str) -> Unsaved | None:
        return self.saving.newest(customer_id)

    # --- working set --------------------------------------------------------------------------------

    async def _states(self, customer_ids: Iterable[str]) -> dict[str, CustomerState]:
        wanted = list(dict.fromkeys(customer_ids))
        missing = [cid for cid in wanted if cid not in self.cache]
        for cid in missing:
            newest = self._newest(cid)
            if newest is not None:
                self.cache[cid] = detached(newest.state)
        missing = [cid for cid in missing if cid not in self.cache]
        stored = {cid: self.directory[cid] for cid in missing if cid in self.directory}
        if stored:
            self.cache.update(await self.repo.load_states(stored))
        for cid in missing:
            if cid not in stored:
                self.cache[cid] = CustomerState(cid)
        states = {}
        for cid in wanted:
            self.cache.move_to_end(cid)
            states[cid] = self.cache[cid]
        return states

    def _trim(self) -> None:
        while len(self.cache) > self.settings.cache_customers:
            self.cache.popitem(last=False)

    def _forget(self, customer_ids: Iterable[str]) -> None:
        for cid in customer_ids:
            self.cache.pop(cid, None)

    # --- instances sharing the store (called on consumer group rebalances) ----------------------------

    def partitions_gained(self) -> None:
        """A consumer was given partitions it did not hold (called from its rebalance callback).
        Only noted: the directory is read again by the next batch, scheduler run or request that
        takes the lock (``_current``), not here, since the consumer sends no heartbeats while its
        callback runs, and waiting for the lock and reading every customer outlasted the session
        at 100,000 customers (the group dropped the consumer, and the batch was read again)."""
        self._gained_at = time.monotonic()

    async def resync(self) -> None:
        """Re-read every customer's current revision now."""
        await self.flush()
        async with self.lock:
            await self._resync_locked()

    async def _resync_locked(self) -> None:
        """Re-read every customer's current revision and drop from memory the customers another
        instance moved on meanwhile (it had partitions this one was given since the last read)."""
        if self.policy is None:
            return  # nothing read yet: the first batch reads it all
        self.policy = None
        self.directory.clear()
        self.standings.clear()
        self.segments = reports.Segments()
        self.planned.clear()
        try:
            await self.ready()
        except BaseException:
            self.cache.clear()  # the next batch reads it all again
            raise
        for waiting in self.saving.pending():  # newer than the store
            self._remember(waiting.state, waiting.updated_at)
        for cid in [c for c, s in self.cache.items() if self.directory.get(c, 0) != s.rev]:
            del self.cache[cid]

    # --- inbound events -------------------------------------------------------------------------------

    async def ingest(self, events: list[CloudEvent], reject: Reject, position: Position | None = None) -> None:
        """Apply a batch of inbound events; events the rules refuse go to ``reject`` one by one.
        ``position`` is committed once what the batch led to is written."""
        started = time.perf_counter()
        if self.saving.backlog >= 2 * self.settings.flush_customers:
            await self.flush()  # the store falls behind: wait for it rather than hold ever more
        async with self.lock:
            policy = await self._current()
            states = await self._states(e.subject for e in events)
            touched: dict[str, CloudEvent] = {}
            try:
                for event in events:
                    try:
                        entry = entry_for(event, policy)
                        if entry is None:
                            continue
                        state = states[event.subject]
                        if add_entry(state.ledger, entry):
                            self.events_in.labels(entry.kind).inc()
                            last = touched.get(event.subject)
                            touched[event.subject] = event if last is None or event.time >= last.time else last
                    except RuleViolation as exc:
                        self.rejected.labels(exc.code).inc()
                        await reject(event, exc)
                now = self.clock.now()
                await self._apply([(states[cid], min(cause.time, now), cause) for cid, cause in touched.items()],
                                  now)
                if self._refresh_wanted():
                    # Within the batch, before its offsets may be committed: once the records that
                    # moved the population are handled, so is what they moved.
                    await self._refresh_locked()
            except BaseException:
                self._forget(states)
                raise
            self.handled(position)
            self._trim()
        self.batch_seconds.observe(time.perf_counter() - started)

    def handled(self, position: Position | None) -> None:
        """Note that a batch's records are handled: they are committed once written."""
        self.saving.handled(position)

    async def flush(self) -> None:
        await self.saving.flush()

    async def flush_due(self, interval: float) -> None:
        await self.saving.due(interval)

    async def erase(self, customer_id: str, position: Position | None = None) -> None:
        # Not while a write is under way: it could store the customer again after the delete.
        async with self.saving.flushing, self.lock:
            await self._current()
            self._forget([customer_id])
            self.saving.forget(customer_id)
            await self.repo.erase(customer_id)
            self.directory.pop(customer_id, None)
            self.standings.pop(customer_id, None)
            self.segments.drop(customer_id)
            self.announced.discard(customer_id)
            self.planned.pop(customer_id, None)
            # The compacted snapshot topic must forget the customer too.
            await self.publisher.tombstone(CRM_CUSTOMER_TIERS, customer_id)
            self.handled(position)
            log.info("customer_erased_from_tiering")

    # --- time-driven ------------------------------------------------------------------------------------

    async def run_due(self, limit: int = 500) -> int:
        """Re-evaluate customers whose next evaluation time has come; the scheduler calls this."""
        async with self.lock:
            await self._current()
            now = self.clock.now()
            due: list[str] = []
            while self.due and self.due[0][0] <= now and len(due) < limit:
                when, cid = heapq.heappop(self.due)
                if self.planned.get(cid) == when and cid not in due:
                    due.append(cid)
            if not due:
                return 0
            try:
                states = await self._states(due)
                # Entries left in the heap by earlier revisions are stale: only a due state counts.
                work = [(s, s.next_eval_at, None) for s in states.values()
                        if s.next_eval_at is not None and s.next_eval_at <= now]
                await self._apply(work, now)
            except BaseException:
                self._forget(due)
                for cid in due:
                    heapq.heappush(self.due, (self.planned[cid], cid))
                raise
            self._trim()
            return len(due)

    async def collect_garbage(self) -> int:
        """Delete superseded revisions; the scheduler calls this between evaluations."""
        stale, self.saving.stale = self.saving.stale, []
        try:
            await self.repo.delete_revisions(stale)
        except BaseException:
            self.saving.stale.extend(stale)
            raise
        return len(stale)

    # --- overrides --------------------------------------------------------------------------------------

    async def set_override(self, customer_id: str, dimension: str, override: Override | None, actor: str,
                           reason: str) -> dict[str, Any] | None:
        async with self.lock:
            await self._current()
            now = self.clock.now()
            try:
                state = (await self._states([customer_id]))[customer_id]
                if customer_id not in self.directory:
                    self._forget([customer_id])
                    return None
                state.snapshot = domain.with_override(state.snapshot, dimension, override)
                await self._apply([(state, now, None)], now, force=True)
                await self.repo.audit_override({
                    "_id": str(uuid.uuid4()), "customer_id": customer_id, "dimension": dimension,
                    "action": "set" if override else "removed", "actor": actor, "reason": reason, "at": now,
                    **({"value": override.value, "mode": override.mode, "expires_at": override.expires_at}
                       if override else {}),
                })
            except BaseException:
                self._forget([customer_id])
                raise
            doc = state_doc(state, self.policy.version if self.policy else "", now)
        await self.flush()  # an answered request is a stored one
        return doc

    # --- population ---------------------------------------------------------------------------------------

    def _population(self, policy: Policy, now: datetime, version: int) -> Cutoffs:
        """One pass over the standings in memory keeping three ints per active customer."""
        spends, orders, recencies = [], [], []
        for s in self.standings.values():
            if s.orders_12m > 0 and s.last_purchase_at is not None:
                spends.append(s.spend_12m)
                orders.append(s.orders_12m)
                recencies.append(max(0, (now - s.last_purchase_at).days))
        return compute_cutoffs(spends, orders, recencies, policy, now, version)

    def _measured(self, cutoffs: Cutoffs) -> None:
        """New cut-offs: the population's drift counts from here."""
        self.cutoffs = cutoffs
        self.joined = self.spend_moved = 0
        self._population_moved = False
        self._refreshed_at = time.monotonic()

    async def refresh(self) -> dict[str, Any]:
        """Recompute the cut-offs now; customers whose class moved get (bulk) events."""
        async with self.lock:
            result = await self._refresh_locked()
        await self.flush()
        return result

    def _refresh_wanted(self) -> bool:
        """The population moved materially since the cut-offs, and long enough ago: at least
        ``refresh_min_interval_s``, and ``REFRESH_DUTY`` times as long as the last refresh took, so
        that refreshes during a large replay take a bounded share of the time instead of a growing one
        (a slower refresh would otherwise leave less time between two, and more to re-evaluate)."""
        wait = max(self.settings.refresh_min_interval_s, REFRESH_DUTY * self._refresh_took)
        return (self.settings.refresh_interval_s > 0 and self._population_moved
                and time.monotonic() - self._refreshed_at >= wait)

    async def _refresh_locked(self) -> dict[str, Any]:
        started = time.monotonic()
        try:
            return await self._refresh_now()
        finally:
            self._refresh_took = time.monotonic() - started

    async def _refresh_now(self) -> dict[str, Any]:
        policy = await self._current()
        now = self.clock.now()
        version = (self.cutoffs.version if self.cutoffs else 0) + 1
        # Classes measured before any population existed were provisional: the first real
        # cut-offs replace them at once, where a dip below a real cut-off waits out its grace.
        provisional = self.cutoffs is None or not self.cutoffs.population
        cutoffs = self._population(policy, now, version)
        await self.repo.store_cutoffs(cutoffs)
        self._measured(cutoffs)
        outcome = await self._reevaluate_all(
            policy, now, only_population=True,
            immediate=frozenset(domain.POPULATION_DIMENSIONS) if provisional else False)
        log.info("population_refreshed", version=version, population=cutoffs.population,
                 changed=outcome.changed_customers)
        return {"cutoffs_version": version, "population": cutoffs.population, "vip_count": cutoffs.vip_count,
                "changed_customers": outcome.changed_customers, "events": outcome.events}

    async def reclassify(self, policy: Policy, *, dry_run: bool) -> dict[str, Any]:
        """Counts of transitions per dimension under ``policy``; unless a dry run, apply them in bulk."""
        async with self.lock:
            await self._current()
            now = self.clock.now()
            version = (self.cutoffs.version if self.cutoffs else 0) + 1
            cutoffs = self._population(policy, now, version)
            transitions: dict[str, dict[str, int]] = {}
            sample: dict[str, dict[str, list[str]]] = {}
            customers = changed = 0
            async for doc in self.current_docs():
                customers += 1
                metrics = Metrics.from_doc(doc.get("metrics") or {})
                previous = snapshot_from_doc(doc)
                targets = classify(metrics, cutoffs, policy, now)
                _, changes = domain.decide(previous, targets, metrics, cutoffs, policy, now, now, immediate=True)
                changed += bool(changes)
                for ch in changes:
                    key = f"{ch.previous}->{ch.current}"
                    moves = transitions.setdefault(ch.dimension, {})
                    moves[key] = moves.get(key, 0) + 1
                    who = sample.setdefault(ch.dimension, {}).setdefault(key, [])
                    if len(who) < SAMPLE_PER_MOVE:
                        who.append(doc["customer_id"])
            result: dict[str, Any] = {"policy_version": policy.version, "dry_run": dry_run, "customers": customers,
                                      "changed_customers": changed, "transitions": transitions, "sample": sample}
            if dry_run:
                return result
            await self.repo.activate_policy(policy.version, now)
            await self.repo.store_cutoffs(cutoffs)
            self.policy = policy
            self._measured(cutoffs)
            outcome = await self._reevaluate_all(policy, now, only_population=False, immediate=True)
            result["events"] = outcome.events
        await self.flush()
        return result

    async def _reevaluate_all(self, policy: Policy, now: datetime, *, only_population: bool,
                              immediate: domain.Immediate = False) -> Outcome:
        """Re-evaluate stored customers in chunks; with ``only_population`` just those whose
        population-based class would move, found from their standings in memory."""
        outcome = Outcome()
        chunk: list[str] = []
        # A copy: re-evaluating a chunk updates the standings.
        for n, (cid, standing) in enumerate(list(self.standings.items()), 1):
            if n % SCAN_YIELD == 0:
                await asyncio.sleep(0)  # the rest of the process runs meanwhile (see ``SCAN_YIELD``)
            if only_population and not domain.population_moves(standing, self.cutoffs, policy, now):
                continue
            chunk.append(cid)
            if len(chunk) >= 500:
                await self._reevaluate(chunk, now, outcome, immediate)
                chunk = []
        if chunk:
            await self._reevaluate(chunk, now, outcome, immediate)
        return outcome

    async def _reevaluate(self, customer_ids: list[str], now: datetime, outcome: Outcome, immediate: domain.Immediate) -> None:
        try:
            states = await self._states(customer_ids)
            events, changed = await self._apply([(s, now, None) for s in states.values()], now, bulk=True,
                                                immediate=immediate)
        except BaseException:
            self._forget(customer_ids)
            raise
        outcome.events += events
        outcome.changed_customers += changed
        self._trim()

    # --- the one write path ---------------------------------------------------------------------------

    async def _apply(self, work: list[tuple[CustomerState, datetime, CloudEvent | None]], now: datetime, *,
                     bulk: bool = False, force: bool = False,
                     immediate: domain.Immediate = False) -> tuple[int, int]:
        """Returns how many events were published and for how many customers a class changed.

        The work goes in chunks, each chunk's events to the producer as soon as it is evaluated. Only
        once every delivery is confirmed do the new revisions join those waiting for ``flush``: a
        failed delivery leaves nothing behind that would keep the retry from publishing again. Ids
        are deterministic, so a retry republishes the same events, never different ones."""
        deliveries: list[asyncio.Future[Any]] = []
        revisions: list[tuple[CustomerState, list[str]]] = []
        history: list[dict[str, Any]] = []
        published = changed = 0
        try:
            for start in range(0, len(work), APPLY_CHUNK):
                records, chunk_changed = self._evaluate(work[start:start + APPLY_CHUNK], now, revisions, history,
                                                         bulk=bulk, force=force, immediate=immediate)
                if records:
                    deliveries.append(asyncio.ensure_future(await self.publisher.send(records)))
                published += len(records)
                changed += chunk_changed
        finally:
            results = await asyncio.gather(*deliveries, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self.saving.keep(revisions, history, self.policy.version if self.policy else "", now)
        for state, _, _ in work:
            if state.rev:
                self._remember(state, now)
        return published, changed

    def _remember(self, state: CustomerState, at: datetime) -> None:
        """What the workflow keeps of every customer: current revision, standing, segment (its churn
        reason judged as of ``at``), next evaluation."""
        self.directory[state.customer_id] = state.rev
        if self.policy is not None:
            self.segments.put(state.customer_id, reports.segment(state.snapshot.output, state.metrics, self.policy, at))
        before = self.standings.get(state.customer_id)
        now = self.standings[state.customer_id] = domain.standing(state.metrics, state.snapshot.held,
                                                                  state.snapshot.pending)
        self._plan(state.customer_id, state.next_eval_at)
        self.joined += (before is None or before.spend_12m <= 0) and now.spend_12m > 0
        self.spend_moved += abs(now.spend_12m - (before.spend_12m if before else 0))
        if self.policy is not None and not self._population_moved:
            share = self.policy.population.refresh_share
            cutoffs = self.cutoffs
            if (self.joined > share * (cutoffs.population if cutoffs else 0)
                    or self.spend_moved > share * (cutoffs.spend_total if cutoffs else 0)):
                self._population_moved = True

    def _evaluate(self, work: list[tuple[CustomerState, datetime, CloudEvent | None]], now: datetime,
                  revisions: list[tuple[CustomerState, list[str]]], history: list[dict[str, Any]], *,
                  bulk: bool, force: bool, immediate: domain.Immediate) -> tuple[list[OutboundRecord], int]:
        """Evaluate ``work``: the outbound records and how many customers changed class; new
        revisions (with the ids of those they replace) and history go to ``revisions`` and
        ``history``. States move to their new revision in memory."""
        policy = self.policy
        assert policy is not None
        records: list[OutboundRecord] = []
        changed = 0
        for state, effective_at, cause in work:
            metrics = compute_metrics(state.ledger.values(), now, policy)
            targets = classify(metrics, self.cutoffs, policy, now)
            snapshot, changes = domain.decide(state.snapshot, targets, metrics, self.cutoffs, policy, now,
                                              effective_at, immediate=immediate)
            next_eval = domain.next_evaluation(state.ledger.values(), metrics, snapshot, policy, now)
            visible = snapshot.output != state.snapshot.output or snapshot.pending != state.snapshot.pending
            if not (force or changes or visible or metrics != state.metrics or next_eval != state.next_eval_at
                    or cause is not None):
                continue
            state.snapshot, state.metrics, state.next_eval_at = snapshot, metrics, next_eval
            state.rev += 1
            revisions.append((state, state.doc_ids))
            state.doc_ids = [doc_id(state.customer_id, state.rev)]
            if not (changes or visible or force or state.customer_id not in self.announced):
                continue  # a new revision with nothing to publish
            self.announced.add(state.customer_id)
            tier_metrics = outbound.tier_metrics(policy, self.cutoffs, metrics, now)
            if changes:
                changed += 1
                ids = [change.event_id(state.customer_id) for change in changes]
                records.extend(outbound.change_event(policy, state.customer_id, event_id, change, tier_metrics, bulk,
                                                     cause, metrics.currency)
                               for event_id, change in zip(ids, changes))
                history.append(history_doc(state.customer_id, changes, ids, bulk, policy.version))
                for change in changes:
                    self._count_change(change.dimension, change.direction)
            records.append(outbound.snapshot_event(policy, state, tier_metrics, now, cause))
        return records, changed

    def _count_change(self, dimension: str, direction: str) -> None:
        child = self._change_counters.get((dimension, direction))
        if child is None:
            child = self._change_counters[dimension, direction] = self.changes_out.labels(dimension, direction)
        child.inc()
