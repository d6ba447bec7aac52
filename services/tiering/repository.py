"""MongoDB access of the tiering service.

FerretDB on SQLite inserts tens of thousands of documents per second but updates or upserts only a
few hundred, so every hot write here is an insert: ledger lines are inserted once under their
natural id (a duplicate is a no-op), and a customer's state is written as a new revision document
whose older revisions are deleted afterwards (a crash in between leaves two, and the higher wins).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, InsertOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.mongo import Index, Store, index

from .domain import Cutoffs, Entry, Metrics, Override, Pending, Snapshot
from .policy import Policy

INDEXES: list[Index] = [
    index("ledger", "customer_id"),
    index("customers", "customer_id", ("rev", DESCENDING)),
    index("customers", "next_eval_at"),
    index("history", "customer_id", "effective_at"),
    index("override_audit", "customer_id", "at"),
    index("policies", "created_at"),
]
DUPLICATE_KEY = 11000


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


def entry_doc(customer_id: str, entry: Entry) -> dict[str, Any]:
    doc = {"_id": f"{customer_id}|{entry.key}", "customer_id": customer_id, "key": entry.key, "kind": entry.kind,
           "time": entry.time, "minor": entry.minor}
    for name in ("order_id", "ref", "status", "score"):
        value = getattr(entry, name)
        if value is not None:
            doc[name] = value
    return doc


def entry_from_doc(doc: Mapping[str, Any]) -> Entry:
    return Entry(key=doc["key"], kind=doc["kind"], time=doc["time"], minor=doc.get("minor", 0),
                 order_id=doc.get("order_id"), ref=doc.get("ref"), status=doc.get("status"), score=doc.get("score"))


def _pending_doc(p: Pending) -> dict[str, Any]:
    return {"current": p.current, "pending": p.pending, "below_since": p.below_since,
            "effective_at": p.effective_at, "needed": p.needed}


def _override_doc(o: Override) -> dict[str, Any]:
    return {"value": o.value, "mode": o.mode, "reason": o.reason, "actor": o.actor, "set_at": o.set_at,
            "expires_at": o.expires_at}


def state_doc(state: CustomerState, policy_version: str, updated_at: datetime) -> dict[str, Any]:
    s, m = state.snapshot, state.metrics
    return {
        "_id": f"{state.customer_id}#{state.rev}",
        "customer_id": state.customer_id,
        "rev": state.rev,
        "held": s.held,
        "output": s.output,
        "reasons": s.reasons,
        "pending": {d: _pending_doc(p) for d, p in s.pending.items()},
        "overrides": {d: _override_doc(o) for d, o in s.overrides.items()},
        "metrics": m.to_doc(),
        # Top-level copies for population scans and reports.
        "spend_minor": m.spend_12m,
        "orders_12m": m.orders_12m,
        "last_purchase_at": m.last_purchase_at,
        "next_eval_at": state.next_eval_at,
        "policy_version": policy_version,
        "updated_at": updated_at,
    }


def snapshot_from_doc(doc: Mapping[str, Any]) -> Snapshot:
    return Snapshot(
        held=dict(doc.get("held") or {}),
        output=dict(doc.get("output") or {}),
        reasons=dict(doc.get("reasons") or {}),
        pending={d: Pending(**p) for d, p in (doc.get("pending") or {}).items()},
        overrides={d: Override(**o) for d, o in (doc.get("overrides") or {}).items()},
    )


def latest_revisions(docs: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    latest: dict[str, Mapping[str, Any]] = {}
    for doc in docs:
        current = latest.get(doc["customer_id"])
        if current is None or doc["rev"] > current["rev"]:
            latest[doc["customer_id"]] = doc
    return latest


async def insert_ignoring_duplicates(collection: Any, docs: list[dict[str, Any]]) -> None:
    if not docs:
        return
    try:
        await collection.bulk_write([InsertOne(d) for d in docs], ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise


class Repository:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.ledger = store["ledger"]
        self.customers = store["customers"]
        self.history = store["history"]
        self.audit = store["override_audit"]
        self.policies = store["policies"]
        self.cutoffs = store["cutoffs"]

    # --- customers ---------------------------------------------------------------------------------

    async def load_states(self, customer_ids: list[str]) -> dict[str, CustomerState]:
        states = {cid: CustomerState(cid) for cid in customer_ids}
        if not customer_ids:
            return states
        for doc in await self.ledger.find({"customer_id": {"$in": customer_ids}}).to_list(None):
            state = states[doc["customer_id"]]
            entry = entry_from_doc(doc)
            state.ledger[entry.key] = entry
        docs = await self.customers.find({"customer_id": {"$in": customer_ids}}).to_list(None)
        for doc in docs:
            states[doc["customer_id"]].doc_ids.append(doc["_id"])
        for cid, doc in latest_revisions(docs).items():
            state = states[cid]
            state.rev = doc["rev"]
            state.snapshot = snapshot_from_doc(doc)
            state.metrics = Metrics.from_doc(doc.get("metrics") or {})
            state.next_eval_at = doc.get("next_eval_at")
        return states

    async def save(self, entries: list[dict[str, Any]], states: list[dict[str, Any]], history: list[dict[str, Any]],
                   superseded: list[str]) -> None:
        """Ledger lines, new state revisions and history, then drop the revisions they replace."""
        await insert_ignoring_duplicates(self.ledger, entries)
        await insert_ignoring_duplicates(self.history, history)
        await insert_ignoring_duplicates(self.customers, states)
        if superseded:
            await self.customers.delete_many({"_id": {"$in": superseded}})

    async def current(self, customer_id: str) -> dict[str, Any] | None:
        docs = await self.customers.find({"customer_id": customer_id}).sort("rev", DESCENDING).limit(1).to_list(1)
        return docs[0] if docs else None

    async def due(self, now: datetime, limit: int) -> list[str]:
        docs = await self.customers.find({"next_eval_at": {"$lte": now}}, {"customer_id": 1}) \
            .sort("next_eval_at", 1).limit(limit).to_list(limit)
        return list(dict.fromkeys(d["customer_id"] for d in docs))

    async def scan(self, projection: Mapping[str, Any] | None = None, batch_size: int = 2000,
                   ) -> AsyncIterator[Mapping[str, Any]]:
        cursor = self.customers.find({}, dict(projection) if projection else None, batch_size=batch_size)
        async for doc in cursor:
            yield doc

    async def find_states(self, customer_ids: list[str]) -> list[Mapping[str, Any]]:
        docs = await self.customers.find({"customer_id": {"$in": customer_ids}}).to_list(None)
        return list(latest_revisions(docs).values())

    async def erase(self, customer_id: str) -> None:
        for collection in (self.ledger, self.customers, self.history, self.audit):
            await collection.delete_many({"customer_id": customer_id})

    # --- history and audit ---------------------------------------------------------------------------

    async def tier_history(self, customer_id: str, limit: int = 500) -> list[dict[str, Any]]:
        return await self.history.find({"customer_id": customer_id}, {"_id": 0}) \
            .sort("effective_at", 1).limit(limit).to_list(limit)

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
        docs = await self.cutoffs.find({}).sort("version", DESCENDING).limit(1).to_list(1)
        return Cutoffs.from_doc(docs[0]) if docs else None

    async def store_cutoffs(self, cutoffs: Cutoffs) -> None:
        await self.cutoffs.insert_one({"_id": cutoffs.version, **cutoffs.to_doc()})

    async def counts_by(self, field: str) -> dict[str, int]:
        """Customers per value of ``output.<field>`` (``$group`` with ``$sum``: FerretDB can do that)."""
        result: dict[str, int] = {}
        async for doc in self.scan({f"output.{field}": 1, "customer_id": 1, "rev": 1}):
            value = (doc.get("output") or {}).get(field)
            if value is not None:
                result[value] = result.get(value, 0) + 1
        return result
