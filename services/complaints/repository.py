"""MongoDB access of the complaints service.

A complaint is one document keyed by its id. Writes replace it (a bulk write: set the fields it
changed) only at the revision it was read at (optimistic concurrency, no transactions), together
with its outbox: the lifecycle events the change causes, kept until they are published so that a
crash between write and publish loses none.
A bulk write (intake, the scheduler) keeps the events of all its complaints in one ``unsent``
document instead, removed once they are published: FerretDB v1 rewrites a whole document for every
update, so clearing each complaint's outbox cost as much again as writing it.

Every query of a hot path is an equality on ``_id`` or on an indexed field that selects few
documents: FerretDB v1 pushes only such equalities down to PostgreSQL and reads every document of
the collection for anything else (ranges, ``$in``, sorts). Hence the SLA timers are found by their
``due_slot`` (the minute of the next check, an equality key) rather than by a range on the time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError

from shared import rotation
from shared.batch import Remembered
from shared.clock import Clock, WallClock
from shared.contract.events import ComplaintCategory, ComplaintStatus
from shared.mongo import DUPLICATE_KEY, Index, Store, index, insert_once, set_if_newer, update_in_commands
from shared.pii import PiiCipher

from .domain import Complaint

INDEXES: list[Index] = [
    index("complaints", "customer_id", ("opened_at", DESCENDING)),
    index("complaints", "status", ("opened_at", DESCENDING)),
    index("complaints", "assignee", ("opened_at", DESCENDING)),
    index("complaints", "breached", ("opened_at", DESCENDING)),
    index("complaints", "due_slot"),
    index("complaints", "pending"),
    index("complaints", "opened_at"),
    # The work queues: a team's or a person's open complaints, both equalities.
    index("complaints", "team", "open"),
    index("complaints", "assignee", "open"),
    index("tiers", "updated_at"),
    index("satisfaction", "customer_id"),
    index("unsent", "unsent"),
]
#: States in which a complaint waits on someone: it is in its team's and its assignee's queue.
CLOSED_STATES = frozenset({"resolved", "closed"})
#: The most complaints one queue read returns to be ordered: far more than anyone's queue holds.
QUEUE_READ_CAP = 5000
#: What a queue shows of a complaint needs none of the sealed text: it is neither read nor opened.
_QUEUE_PROJECTION = {"subject": 0, "description": 0, "resolution_summary": 0, "comments": 0, "feedback": 0,
                     "outbox": 0, "pii": 0, "pii_kid": 0, "applied": 0}
SLOT_S = 60
#: Documents per insert command; a batch's commands run side by side (an insert holds one connection).
INSERTS_PER_COMMAND = 100
#: Tier upserts of a batch in flight at once.
TIERS_IN_FLIGHT = 8
SCHEDULER_STATE = "sla"
#: One entry of a bulk write's unsent events: complaint id, customer id, the revision the write
#: makes (0: opened), the events in the order they are published.
Unsent = tuple[str, str, int, list[str]]
#: The ``scheduler`` document recording that complaints stored before the work queues got their keys.
QUEUE_KEYS = "queue_keys"
STATUSES: tuple[str, ...] = ComplaintStatus.__args__  # type: ignore[attr-defined]
CATEGORIES: tuple[str, ...] = ComplaintCategory.__args__  # type: ignore[attr-defined]
#: What the customer and staff wrote, sealed at rest: these fields, and the text of each entry of
#: these lists.
SEALED = ("subject", "description", "resolution_summary")
SEALED_ITEMS = (("comments", "text"), ("feedback", "comment"))
_SEALED_FIELDS = frozenset({*SEALED, *(items for items, _ in SEALED_ITEMS)})
_COMPLAINT_FIELDS = tuple(Complaint.model_fields)


def changed_fields(before: Complaint, after: Complaint) -> set[str]:
    """The fields of a complaint whose values differ between two of its versions."""
    return {name for name in _COMPLAINT_FIELDS if getattr(before, name) != getattr(after, name)}


def slot_of(moment: datetime) -> int:
    """The due-time bucket of a moment: whole minutes since the epoch."""
    return int(moment.timestamp()) // SLOT_S


def due_slot(next_check_at: datetime | None, written_at: datetime) -> int | None:
    """Where the scheduler finds a complaint: the minute of its next check, but never a minute
    before the write, which a pass may already have left behind (an intake of an old event)."""
    if next_check_at is None:
        return None
    return max(slot_of(next_check_at), slot_of(written_at))


class Repository:
    def __init__(self, store: Store, cipher: PiiCipher, clock: Clock | None = None) -> None:
        self.store = store
        self.cipher = cipher
        self.clock = clock or WallClock()
        self.complaints = store["complaints"]
        self.tiers = store["tiers"]
        self.satisfaction = store["satisfaction"]
        self.state = store["scheduler"]
        self.unsent = store["unsent"]
        #: The tier this process last stored per customer (only this consumer writes them).
        self.known_tiers: Remembered[str, tuple[dict[str, Any], datetime]] = Remembered()

    def _document(self, complaint: Complaint, outbox: list[str]) -> dict[str, Any]:
        doc = complaint.model_dump()
        doc["_id"] = complaint.complaint_id
        for items, name in SEALED_ITEMS:
            self.cipher.seal_items(doc, items, name, collection="complaints")
        self.cipher.seal_fields(doc, SEALED, collection="complaints")
        if doc["pii_kid"] is None and any(isinstance(entry.get(name), dict)
                                          for items, name in SEALED_ITEMS for entry in doc.get(items) or ()):
            doc["pii_kid"] = self.cipher.active_key_id  # only comments sealed: a rotation must find them too
        return doc | self._keys(complaint, outbox)

    def _keys(self, complaint: Complaint, outbox: list[str]) -> dict[str, Any]:
        """What a stored complaint carries besides its fields: its outbox and the keys the
        scheduler and the work queues look it up by."""
        return {"outbox": outbox, "pending": bool(outbox), "open": complaint.status not in CLOSED_STATES,
                "due_slot": due_slot(complaint.next_check_at, self.clock.now())}

    async def load(self, complaint_id: str) -> tuple[Complaint, list[str]] | None:
        doc = await self.complaints.find_one({"_id": complaint_id})
        return self._loaded(doc) if doc is not None else None

    async def get(self, complaint_id: str) -> Complaint | None:
        loaded = await self.load(complaint_id)
        return loaded[0] if loaded else None

    async def insert(self, complaint: Complaint, outbox: list[str]) -> bool:
        return await insert_once(self.complaints, self._document(complaint, outbox))

    async def insert_new(self, complaints: list[tuple[Complaint, list[str]]], token: str | None = None) -> set[str]:
        """Insert in a few commands side by side, marked with ``token`` when given; the ids that were
        already there (left as they were)."""
        chunks = [complaints[i:i + INSERTS_PER_COMMAND] for i in range(0, len(complaints), INSERTS_PER_COMMAND)]
        taken: set[str] = set()
        for found in await asyncio.gather(*(self._insert_chunk(chunk, token) for chunk in chunks)):
            taken |= found
        return taken

    async def _insert_chunk(self, complaints: list[tuple[Complaint, list[str]]], token: str | None) -> set[str]:
        marked = {"write": token} if token else {}
        try:
            await self.complaints.insert_many([{**self._document(c, o), **marked} for c, o in complaints],
                                              ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return {complaints[e["index"]][0].complaint_id for e in errors}
        return set()

    async def replace(self, complaint: Complaint, outbox: list[str], *, expected_revision: int) -> bool:
        result = await self.complaints.replace_one(
            {"_id": complaint.complaint_id, "revision": expected_revision}, self._document(complaint, outbox))
        return result.matched_count == 1

    async def reseal_batch(self, limit: int) -> tuple[int, int]:
        """Up to ``limit`` complaints sealed under an old key put under the active one."""
        return await rotation.reseal_batch(self.complaints, self.cipher, "complaints", limit, SEALED_ITEMS)

    async def count_unrotated(self) -> int:
        return await self.complaints.count_documents(rotation.stale_fields(self.cipher))

    async def write_many(self, changed: list[tuple[Complaint, Complaint]], token: str) -> int:
        """Each complaint as changed (``after``) from how it was read (``before``), written at the
        revision read, with no outbox, marked with ``token``, in a few commands; how many were
        written. Only the fields that changed are sent (a scheduler tick changes a few of forty),
        unless text sealed at rest changed: then the whole document."""
        writes: list[UpdateOne | ReplaceOne] = []
        for before, after in changed:
            query = {"_id": after.complaint_id, "revision": before.revision}
            fields = changed_fields(before, after)
            if fields & _SEALED_FIELDS:
                writes.append(ReplaceOne(query, {**self._document(after, []), "write": token}))
            else:
                writes.append(UpdateOne(query, {"$set": {**after.model_dump(include=fields), **self._keys(after, []),
                                                         "write": token}}))
        return await update_in_commands(self.complaints, writes)

    async def written_with(self, complaint_ids: Iterable[str], token: str) -> set[str]:
        """Which of these complaints hold the write marked ``token``: one ``_id`` lookup each."""
        found = await asyncio.gather(*(self.complaints.find_one({"_id": complaint_id, "write": token}, {"_id": 1})
                                       for complaint_id in complaint_ids))
        return {doc["_id"] for doc in found if doc is not None}

    async def write_state(self, complaint_id: str) -> tuple[int, str | None] | None:
        """The stored revision of a complaint and the bulk write that made it (None: a single write)."""
        doc = await self.complaints.find_one({"_id": complaint_id}, {"revision": 1, "write": 1})
        return (doc["revision"], doc.get("write")) if doc is not None else None

    async def clear_outbox(self, complaint_id: str, revision: int) -> None:
        # A newer revision carries these events in its own outbox and publishes them itself.
        await self.complaints.update_one({"_id": complaint_id, "revision": revision},
                                         {"$set": {"outbox": [], "pending": False}})

    # --- Events of bulk writes until they are published ----------------------------------------

    async def hold_unsent(self, token: str, entries: list[Unsent]) -> None:
        """Before a bulk write marked ``token``: the events it will publish, in one document. A bulk
        write stores its complaints with no outbox of their own, so that no second write per
        complaint is needed once they are published: this one document is removed instead."""
        # As one string: FerretDB v1 converts every value of a document one by one, and a few
        # hundred events as array items cost about as much to insert as the complaints themselves.
        await self.unsent.insert_one({"_id": token, "unsent": True, "at": self.clock.now(),
                                      "entries": json.dumps(entries)})

    async def release_unsent(self, token: str) -> None:
        await self.unsent.delete_one({"_id": token})

    async def unsent_tokens(self) -> set[str]:
        """The bulk writes whose events are not yet known to be published: those under way, and
        those a crash or a broker outage left behind."""
        return {doc["_id"] async for doc in self.unsent.find({"unsent": True}, {"_id": 1})}

    async def unsent_events(self, token: str) -> list[Unsent]:
        doc = await self.unsent.find_one({"_id": token})
        return [(c, customer, revision, events) for c, customer, revision, events in
                (json.loads(doc["entries"]) if doc else ())]

    # --- What the scheduler reads ------------------------------------------------------------

    async def due_in(self, slot: int) -> list[tuple[Complaint, list[str]]]:
        """The complaints whose next check falls in one minute, whole: the pass needs no second read."""
        return [self._loaded(doc) for doc in await self.complaints.find({"due_slot": slot}).to_list(None)]

    async def with_checks(self) -> list[tuple[Complaint, list[str], int | None]]:
        """Every complaint with a next check, and the slot it is filed under. Reads the whole
        collection: only for the catch-up of a scheduler that has no progress to resume from."""
        cursor = self.complaints.find({"next_check_at": {"$ne": None}})
        return [(*self._loaded(doc), doc.get("due_slot")) async for doc in cursor]

    async def move_to_slot(self, complaint_id: str, revision: int, slot: int) -> None:
        await self.complaints.update_one({"_id": complaint_id, "revision": revision}, {"$set": {"due_slot": slot}})

    async def progress(self) -> int | None:
        """The last slot every pass has finished with, kept across restarts."""
        doc = await self.state.find_one({"_id": SCHEDULER_STATE})
        return doc.get("done_through") if doc else None

    async def set_progress(self, slot: int) -> None:
        await self.state.update_one({"_id": SCHEDULER_STATE}, {"$set": {"done_through": slot}}, upsert=True)

    async def pending(self, limit: int = 500) -> list[tuple[str, int]]:
        cursor = self.complaints.find({"pending": True}, {"_id": 1, "revision": 1}).limit(limit)
        return [(doc["_id"], doc["revision"]) for doc in await cursor.to_list(None)]

    # --- What agents and handlers read -------------------------------------------------------

    async def search(self, *, status: str | None = None, open_: bool | None = None, breached: bool | None = None,
                     customer: str | None = None, assignee: str | None = None, limit: int = 100) -> list[Complaint]:
        """Newest first. With a customer, assignee, status, ``open`` or ``breached=true`` the store
        selects by an indexed equality and sorts what it found; with none of them it reads every
        complaint."""
        query: dict[str, Any] = {}
        if open_ is not None:
            query["open"] = open_
        if customer:
            query["customer_id"] = customer
        if assignee:
            query["assignee"] = assignee
        if status:
            query["status"] = status
        if breached is not None:
            query["breached"] = breached
        cursor = self.complaints.find(query).sort("opened_at", DESCENDING).limit(limit)
        return [self._complaint(doc) for doc in await cursor.to_list(None)]

    async def queue(self, *, team: str | None = None, assignee: str | None = None) -> list[Complaint]:
        """The open complaints of a team or of a person, in no order (the caller orders them by due
        time): an equality on the team or the assignee and on ``open``, both indexed. Their
        subjects, descriptions and comments are left out."""
        query: dict[str, Any] = {"team": team} if team is not None else {"assignee": assignee}
        cursor = self.complaints.find({**query, "open": True}, _QUEUE_PROJECTION).limit(QUEUE_READ_CAP)
        return [Complaint.model_validate({**doc, "subject": ""}) for doc in await cursor.to_list(None)]

    async def backfill_queue_keys(self, team_for: Callable[[str], str] | None) -> int:
        """Once per store: the queue keys (``open``, ``team``) of complaints stored before the work
        queues existed; reads each status's and each category's complaints once, so it is recorded as
        done and not repeated at the next start. How many complaints it changed."""
        if await self.state.find_one({"_id": QUEUE_KEYS}) is not None:
            return 0
        changed = 0
        for status in STATUSES:
            result = await self.complaints.update_many({"status": status, "open": {"$exists": False}},
                                                       {"$set": {"open": status not in CLOSED_STATES}})
            changed += result.modified_count
        for category in CATEGORIES if team_for else ():
            result = await self.complaints.update_many({"category": category, "team": None},
                                                       {"$set": {"team": team_for(category)}})  # type: ignore[misc]
            changed += result.modified_count
        await self.state.update_one({"_id": QUEUE_KEYS}, {"$set": {"done_at": self.clock.now()}}, upsert=True)
        return changed

    async def open_count(self, assignee: str) -> int:
        """How many open complaints a person holds: their load when new complaints are shared out."""
        cursor = self.complaints.find({"assignee": assignee, "open": True}, {"_id": 1})
        return len(await cursor.to_list(None))

    async def opened_between(self, start: datetime, end: datetime) -> list[Complaint]:
        # The report reads a period by design (a range, so every complaint); it is not a hot path.
        cursor = self.complaints.find({"opened_at": {"$gte": start, "$lt": end}})
        return [self._complaint(doc) for doc in await cursor.to_list(None)]

    async def ids_of_customer(self, customer_id: str) -> list[str]:
        cursor = self.complaints.find({"customer_id": customer_id}, {"_id": 1})
        return [doc["_id"] for doc in await cursor.to_list(None)]

    async def latest_resolved(self, customer_id: str) -> tuple[str, datetime | None] | None:
        """The customer's most recently opened resolved or closed complaint and when it was resolved."""
        # The customer id is the equality the store selects by; the status and the order apply to
        # that customer's complaints only.
        doc = await self.complaints.find_one({"customer_id": customer_id, "status": {"$in": ["resolved", "closed"]}},
                                             {"_id": 1, "resolved_at": 1}, sort=[("opened_at", DESCENDING)])
        return (doc["_id"], doc.get("resolved_at")) if doc else None

    # --- The customer's current tier, from the compacted classification topic ---------------

    async def tier(self, customer_id: str) -> str | None:
        doc = await self.tiers.find_one({"_id": customer_id})
        return doc.get("tier") if doc else None

    async def put_tiers(self, tiers: Iterable[tuple[str, str | None, datetime]]) -> set[str]:
        """``(customer_id, tier, updated_at)``, at most one per customer, side by side; returns the
        customers whose tier may have changed. The newest snapshot only is kept: an older one read
        late changes nothing, since the upsert matches an older snapshot or none, and a newer one
        stored makes its insert a duplicate key. A snapshot whose tier is the one this process last
        stored for the customer writes nothing (most snapshots change metrics, not the tier). One
        upsert each: see ``update_in_commands`` for why not in bulk."""
        slots = asyncio.Semaphore(TIERS_IN_FLIGHT)
        changed: set[str] = set()

        async def put(customer_id: str, tier: str | None, at: datetime) -> None:
            async with slots:
                if await set_if_newer(self.tiers, customer_id, "updated_at", at, {"tier": tier}, self.known_tiers):
                    changed.add(customer_id)

        await asyncio.gather(*(put(*t) for t in tiers))
        return changed

    async def delete_tier(self, customer_id: str) -> None:
        self.known_tiers.forget(customer_id)
        await self.tiers.delete_one({"_id": customer_id})

    # --- General satisfaction: survey answers that scored no complaint -------------------------

    async def record_satisfaction(self, interaction_id: str, customer_id: str, score: int, at: datetime,
                                  tier: str | None) -> bool:
        """Keep an answer once (by its interaction id) with the customer's tier when it was given."""
        return await insert_once(self.satisfaction, {"_id": interaction_id, "customer_id": customer_id,
                                                     "score": score, "at": at, "tier": tier})

    async def satisfaction_between(self, start: datetime, end: datetime) -> list[tuple[str | None, int]]:
        """``(tier, score)`` of the answers given in ``[start, end)``: a report's read of a period."""
        cursor = self.satisfaction.find({"at": {"$gte": start, "$lt": end}}, {"tier": 1, "score": 1})
        return [(doc.get("tier"), doc["score"]) for doc in await cursor.to_list(None)]

    async def forget_satisfaction(self, customer_id: str) -> None:
        """An erased customer's answers stay in the figures, no longer linked to them."""
        await self.satisfaction.update_many({"customer_id": customer_id}, {"$set": {"customer_id": None}})

    def _complaint(self, doc: dict[str, Any]) -> Complaint:
        doc = self.cipher.open_fields(dict(doc), collection="complaints")
        for items, name in SEALED_ITEMS:
            self.cipher.open_items(doc, items, name, collection="complaints")
        return Complaint.model_validate(doc)

    def _loaded(self, doc: dict[str, Any]) -> tuple[Complaint, list[str]]:
        return self._complaint(doc), list(doc.get("outbox") or [])
