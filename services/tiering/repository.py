"""MongoDB access of the tiering service.

Every query on a hot path (a batch, the write-behind flush, the scheduler, a customer's
classification, history and audit) is an equality on ``_id`` or on an indexed field, the one kind of
filter FerretDB v1 hands to PostgreSQL, where an index serves it; any other filter reads the whole
collection. A customer's state (ledger lines keyed by natural id, the snapshot and the metrics) is
one document per revision, ``<customer>#<rev>``: a new revision is inserted, and superseded ones are
deleted by ``_id`` now and then (until then, and after a crash, the highest revision wins). The
service keeps the directory of customers and their current revision in memory, built by the one
read of the whole collection it allows itself, at start, with what the population refresh and the
segments report keep of each customer; a reclassification and the period report read it whole too,
by nature.
"""

from __future__ import annotations

import asyncio

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from pymongo import DESCENDING, DeleteOne, InsertOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.mongo import DUPLICATE_KEY, Index, Store, index

from .domain import Change, Override, Pending, Snapshot, stable_id
from .metrics import Cutoffs, Entry, Metrics
from .policy import Policy

INDEXES: list[Index] = [
    index("customers", "customer_id", ("rev", DESCENDING)),
    index("history", "customer_id"),
    index("override_audit", "customer_id", "at"),
]
#: Fields of a revision the directory hands to its ``keep`` (with ``customer_id`` and ``rev``).
DIRECTORY_FIELDS = ("next_eval_at", "metrics", "held", "pending", "output", "updated_at")
T = TypeVar("T")
#: Revisions per delete command, and commands in flight: each ``DeleteOne`` is an ``_id`` lookup,
#: and FerretDB runs the commands of several connections side by side.
DELETE_CHUNK = 500
DELETES_IN_FLIGHT = 4


class CustomerState:
    """A customer's ledger and current snapshot, as held in memory between events."""

    __slots__ = ("customer_id", "ledger", "snapshot", "rev", "metrics", "next_eval_at", "doc_ids")

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.ledger: dict[str, Entry] = {}
        self.snapshot = Snapshot()
        self.rev = 0
        self.metrics = Metrics()
        self.next_eval_at: datetime | None = None
        self.doc_ids: list[str] = []


def entry_doc(entry: Entry) -> dict[str, Any]:
    doc = {"key": entry.key, "kind": entry.kind, "time": entry.time, "minor": entry.minor}
    for name in ("order_id", "ref", "status", "score", "currency"):
        value = getattr(entry, name)
        if value is not None:
            doc[name] = value
    return doc


def entry_from_doc(doc: Mapping[str, Any]) -> Entry:
    return Entry(key=doc["key"], kind=doc["kind"], time=doc["time"], minor=doc.get("minor", 0),
                 order_id=doc.get("order_id"), ref=doc.get("ref"), status=doc.get("status"), score=doc.get("score"),
                 currency=doc.get("currency"))


def _pending_doc(p: Pending) -> dict[str, Any]:
    return {"current": p.current, "pending": p.pending, "below_since": p.below_since,
            "effective_at": p.effective_at, "needed": p.needed, "spend_needed": p.spend_needed}


def _override_doc(o: Override) -> dict[str, Any]:
    return {"value": o.value, "mode": o.mode, "reason": o.reason, "actor": o.actor, "set_at": o.set_at,
            "expires_at": o.expires_at}


def doc_id(customer_id: str, rev: int) -> str:
    return f"{customer_id}#{rev}"


def state_doc(state: CustomerState, policy_version: str, updated_at: datetime, *,
              ledger: bool = True) -> dict[str, Any]:
    """The stored revision of ``state``; without ``ledger``, all of it but the ledger."""
    s, m = state.snapshot, state.metrics
    doc = {
        "_id": doc_id(state.customer_id, state.rev),
        "customer_id": state.customer_id,
        "rev": state.rev,
        "held": s.held,
        "output": s.output,
        "reasons": s.reasons,
        "pending": {d: _pending_doc(p) for d, p in s.pending.items()},
        "overrides": {d: _override_doc(o) for d, o in s.overrides.items()},
        "entered": s.entered,
        "metrics": m.to_doc(),
        # Top-level copies for population scans and reports.
        "spend_minor": m.spend_12m,
        "orders_12m": m.orders_12m,
        "last_purchase_at": m.last_purchase_at,
        "next_eval_at": state.next_eval_at,
        "policy_version": policy_version,
        "updated_at": updated_at,
    }
    if ledger:
        doc["ledger"] = [entry_doc(e) for e in state.ledger.values()]
    return doc


def history_doc(customer_id: str, changes: list[Change], ids: list[str], bulk: bool,
                policy_version: str) -> dict[str, Any]:
    """One document for the changes one evaluation made: a new customer changes on every dimension
    at once, and one insert instead of seven is what the store's write rate allows. The id is
    derived from the event ids, so a retry of the same evaluation is a duplicate, and a retry that
    decided more (after a crash, with a larger batch) is a second document the reader merges."""
    return {
        "_id": stable_id("|".join(ids)),
        "customer_id": customer_id,
        "changes": [{"event_id": event_id, "dimension": c.dimension, "previous": c.previous, "current": c.current,
                     "direction": c.direction, "reason": c.reason, "override": c.override, "bulk": bulk,
                     "effective_at": c.effective_at, "policy_version": policy_version}
                    for event_id, c in zip(ids, changes)],
    }


def snapshot_from_doc(doc: Mapping[str, Any]) -> Snapshot:
    return Snapshot(
        held=dict(doc.get("held") or {}),
        output=dict(doc.get("output") or {}),
        reasons=dict(doc.get("reasons") or {}),
        pending={d: Pending(**p) for d, p in (doc.get("pending") or {}).items()},
        overrides={d: Override(**o) for d, o in (doc.get("overrides") or {}).items()},
        entered=dict(doc.get("entered") or {}),
    )


def state_from_doc(customer_id: str, doc: Mapping[str, Any] | None) -> CustomerState:
    """The in-memory state of a stored revision (a fresh customer for ``None``)."""
    state = CustomerState(customer_id)
    if doc is not None:
        state.rev = doc["rev"]
        state.ledger = {e["key"]: entry_from_doc(e) for e in doc.get("ledger") or ()}
        state.snapshot = snapshot_from_doc(doc)
        state.metrics = Metrics.from_doc(doc.get("metrics") or {})
        state.next_eval_at = doc.get("next_eval_at")
        state.doc_ids = [doc["_id"]]
    return state


async def insert_all(collection: Any, docs: list[dict[str, Any]], *, replace_duplicates: bool = False) -> None:
    """Insert ``docs``; one whose ``_id`` is taken is skipped, or with ``replace_duplicates``
    replaces the stored one. State revisions replace: a taken revision was written by an earlier
    attempt at the same batch that failed afterwards (say, publishing), and the retry read the same
    records and maybe more, so its revision must not be dropped."""
    if not docs:
        return
    try:
        await collection.bulk_write([InsertOne(d) for d in docs], ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        if replace_duplicates:
            for error in errors:
                doc = docs[error["index"]]
                await collection.replace_one({"_id": doc["_id"]}, doc)


class Repository:
    def __init__(self, store: Store) -> None:
        self.store = store
        # A few reads in flight at once are faster than one by one; many more only queue in the store.
        self._readers = asyncio.Semaphore(8)
        self.customers = store["customers"]
        self.history = store["history"]
        self.audit = store["override_audit"]
        self.policies = store["policies"]
        self.cutoffs = store["cutoffs"]

    # --- customers ---------------------------------------------------------------------------------

    async def directory(self, keep: Callable[[Mapping[str, Any]], T]) -> dict[str, tuple[int, T]]:
        """Every stored customer with its current revision and what ``keep`` makes of that revision
        (its fields ``DIRECTORY_FIELDS``), in one scan."""
        latest: dict[str, tuple[int, T]] = {}
        stale: list[str] = []
        async for doc in self.scan(dict.fromkeys(("customer_id", "rev", *DIRECTORY_FIELDS), 1)):
            current = latest.get(doc["customer_id"])
            if current is not None:
                stale.append(doc_id(doc["customer_id"], min(current[0], doc["rev"])))
            if current is None or doc["rev"] > current[0]:
                latest[doc["customer_id"]] = (doc["rev"], keep(doc))
        await self.delete_revisions(stale)  # revisions left behind by a stop before their clean-up
        return latest

    async def load_states(self, revisions: Mapping[str, int]) -> dict[str, CustomerState]:
        """States by ``_id`` lookups (the one filter the store answers without a scan), concurrently."""
        async def one(cid: str, rev: int) -> Mapping[str, Any] | None:
            async with self._readers:
                return await self.customers.find_one({"_id": doc_id(cid, rev)})

        docs = await asyncio.gather(*(one(cid, rev) for cid, rev in revisions.items()))
        return {cid: state_from_doc(cid, doc) for cid, doc in zip(revisions, docs)}

    async def save(self, states: list[dict[str, Any]], history: list[dict[str, Any]]) -> None:
        """New state revisions and history; the revisions they replace are deleted later, in bulk."""
        await insert_all(self.history, history)
        await insert_all(self.customers, states, replace_duplicates=True)

    async def delete_revisions(self, ids: list[str]) -> None:
        """One ``DeleteOne`` per revision: FerretDB filters an ``$in`` itself, after reading the
        whole collection, while an ``_id`` equality is an index lookup (on MongoDB both are)."""
        slots = asyncio.Semaphore(DELETES_IN_FLIGHT)

        async def chunk(part: list[str]) -> None:
            async with slots:
                await self.customers.bulk_write([DeleteOne({"_id": i}) for i in part], ordered=False)

        await asyncio.gather(*(chunk(ids[s:s + DELETE_CHUNK]) for s in range(0, len(ids), DELETE_CHUNK)))

    async def state(self, customer_id: str, rev: int) -> dict[str, Any] | None:
        return await self.customers.find_one({"_id": doc_id(customer_id, rev)}, {"ledger": 0})

    async def scan(self, projection: Mapping[str, Any] | None = None, batch_size: int = 2000,
                   ) -> AsyncIterator[Mapping[str, Any]]:
        cursor = self.customers.find({}, dict(projection) if projection else None, batch_size=batch_size)
        async for doc in cursor:
            yield doc

    async def erase(self, customer_id: str) -> None:
        for collection in (self.customers, self.history, self.audit):
            await collection.delete_many({"customer_id": customer_id})

    # --- history and audit ---------------------------------------------------------------------------

    async def tier_history(self, customer_id: str, limit: int = 500,
                           unsaved: Iterable[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
        """The customer's changes, stored and ``unsaved`` (history documents not written yet)."""
        changes: dict[str, dict[str, Any]] = {}
        stored = await self.history.find({"customer_id": customer_id}, {"_id": 0, "changes": 1}).to_list(None)
        for doc in [*stored, *(d for d in unsaved if d["customer_id"] == customer_id)]:
            for change in doc["changes"]:
                changes.setdefault(change["event_id"], change)
        return sorted(changes.values(), key=lambda c: (c["effective_at"], c["dimension"]))[:limit]

    async def audit_override(self, doc: dict[str, Any]) -> None:
        await self.audit.insert_one(doc)

    async def override_audit(self, customer_id: str) -> list[dict[str, Any]]:
        return await self.audit.find({"customer_id": customer_id}, {"_id": 0}).sort("at", 1).to_list(None)

    # --- policy and cut-offs ---------------------------------------------------------------------------

    async def store_policy(self, policy: Policy, created_at: datetime) -> bool:
        try:
            await self.policies.insert_one({"_id": policy.version, "document": policy.model_dump(mode="json"),
                                            "created_at": created_at, "active": False})
        except DuplicateKeyError:
            return False
        return True

    async def policy(self, version: str) -> Policy | None:
        doc = await self.policies.find_one({"_id": version})
        return Policy.model_validate(doc["document"]) if doc else None

    async def active_policy(self) -> Policy | None:
        doc = await self.store["meta"].find_one({"_id": "active_policy"})
        return await self.policy(doc["version"]) if doc else None

    async def activate_policy(self, version: str, at: datetime) -> None:
        await self.store["meta"].replace_one({"_id": "active_policy"}, {"version": version, "at": at}, upsert=True)

    async def latest_cutoffs(self) -> Cutoffs | None:
        """The cut-offs ``meta`` points at: every refresh adds a version, so finding the newest by
        sorting would read them all."""
        pointer = await self.store["meta"].find_one({"_id": "cutoffs"})
        if pointer is not None:
            doc = await self.cutoffs.find_one({"_id": pointer["version"]})
        else:  # a store written before the pointer: one sorted read, then the pointer
            found = await self.cutoffs.find({}).sort("version", DESCENDING).limit(1).to_list(1)
            doc = found[0] if found else None
            if doc is not None:  # unless a refresh elsewhere set it meanwhile
                await self.store["meta"].update_one({"_id": "cutoffs"}, {"$setOnInsert": {"version": doc["_id"]}},
                                                    upsert=True)
        return Cutoffs.from_doc(doc) if doc else None

    async def store_cutoffs(self, cutoffs: Cutoffs) -> None:
        # A replace: a version stored by an attempt that stopped before moving the pointer is taken again.
        await self.cutoffs.replace_one({"_id": cutoffs.version}, {"_id": cutoffs.version, **cutoffs.to_doc()},
                                       upsert=True)
        await self.store["meta"].replace_one({"_id": "cutoffs"}, {"version": cutoffs.version}, upsert=True)
