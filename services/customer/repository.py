"""MongoDB access of the customer service.

Personal data (name, phone, email, address; interaction summaries) is sealed before it reaches
the store and opened after it leaves; every other module sees plain profiles. Phone and e-mail
are findable only through their blind indexes.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared import rotation
from shared.contract.events import CustomerProfile
from shared.mongo import DUPLICATE_KEY, Index, Store, index, insert_once, update_in_commands
from shared.pii import PiiCipher

from . import domain

CUSTOMERS = "customers"
TIMELINE = "timeline"
CONSENTS = "consents"
COMPLAINTS = "complaints"
#: Collections whose documents may hold sealed values (``pii`` and ``pii_kid``).
SEALED_COLLECTIONS: tuple[str, ...] = (CUSTOMERS, TIMELINE)
LISTED_STATUSES = ["prospect", "active"]
#: The list walks customers bucket by bucket: each page reads a bucket or a few through an equality the
#: store serves from an index, never the whole collection (a range on ``_id`` is filtered after reading
#: every row in FerretDB v1). 256 buckets keep a bucket at ~400 customers at 100,000.
LIST_BUCKETS = 256
_MOST_BUCKETS_AT_ONCE = 16

INDEXES: list[Index] = [
    index(CUSTOMERS, "phone_bidx"),
    index(CUSTOMERS, "email_bidx"),
    index(CUSTOMERS, "tier"),
    index(CUSTOMERS, "lifecycle"),
    index(CUSTOMERS, "tags"),
    index(CUSTOMERS, "industry"),
    index(CUSTOMERS, "region"),
    index(CUSTOMERS, "pii_kid"),
    index(CUSTOMERS, "list_bucket"),
    index(TIMELINE, "customer_id", ("at", DESCENDING), ("_id", DESCENDING)),
    index(TIMELINE, "pii_kid"),
    index(CONSENTS, "customer_id", "at"),
    index(COMPLAINTS, "customer_id"),
]


@dataclass(frozen=True)
class Stored:
    """What the store holds about one customer id."""

    customer_id: str
    profile: CustomerProfile | None
    status: str | None
    last_cause: str | None
    classification: dict[str, Any] | None
    erased_at: datetime | None = None
    #: The account manager (``id``, ``name``, ``since``), as the complaints service last published it.
    account_manager: dict[str, Any] | None = None
    applied: domain.Applied = domain.Applied()

    @property
    def erased(self) -> bool:
        return self.status == "erased"


class Repository:
    def __init__(self, store: Store, cipher: PiiCipher) -> None:
        self.store = store
        self.cipher = cipher

    # --- profiles --------------------------------------------------------------------------------

    async def load(self, customer_id: str) -> Stored | None:
        doc = await self.store[CUSTOMERS].find_one({"_id": customer_id})
        return self.from_document(doc) if doc else None

    async def peek(self, customer_id: str) -> dict[str, Any] | None:
        """Status, last cause and classification only: no personal value is read or opened."""
        return await self.store[CUSTOMERS].find_one(
            {"_id": customer_id}, {"status": 1, "last_cause": 1, "classification": 1, "classified_at": 1})

    def from_document(self, doc: Mapping[str, Any]) -> Stored:
        status = doc.get("status")
        profile = self._profile(doc) if status in LISTED_STATUSES else None
        return Stored(customer_id=doc["_id"], profile=profile, status=status, last_cause=doc.get("last_cause"),
                      classification=doc.get("classification"), erased_at=doc.get("erased_at"),
                      account_manager=doc.get("account_manager"),
                      applied=domain.Applied(tuple((a["id"], a["at"]) for a in doc.get("applied") or ()),
                                             doc.get("applied_floor")))

    def _profile(self, doc: Mapping[str, Any]) -> CustomerProfile:
        opened = self.cipher.open_fields(dict(doc), collection=CUSTOMERS)
        return CustomerProfile.model_validate({name: opened.get(name) for name in CustomerProfile.model_fields})

    def profile_document(self, customer_id: str, profile: CustomerProfile, cause: str) -> dict[str, Any]:
        doc = {"_id": customer_id, **profile.model_dump(mode="json")}
        doc.update(created_at=profile.created_at, updated_at=profile.updated_at, last_cause=cause)
        self.cipher.seal_fields(doc, domain.ENCRYPTED_FIELDS, collection=CUSTOMERS)
        del doc["_id"]  # the caller writes under it
        doc.update(self._blind_indexes(profile.phone, profile.email))
        doc["list_bucket"] = list_bucket(customer_id)
        return doc

    def _blind_indexes(self, phone: str | None, email: str | None) -> dict[str, Any]:
        return {"phone_bidx": self.phone_index(phone) if phone else None,
                "email_bidx": self.email_index(email) if email else None,
                "bidx_kid": self.cipher.blind_key_id}

    async def save(self, customer_id: str, profile: CustomerProfile, *, expected_version: int | None,
                   cause: str, applied: domain.Applied | None = None) -> bool:
        """Write ``profile`` if the stored version is still ``expected_version``; False on a conflict.
        ``applied``: the intake event ids the profile now holds, when an intake event changed it."""
        doc = self.profile_document(customer_id, profile, cause)
        if applied is not None:
            doc.update(_applied_fields(applied))
        if expected_version is None:
            # A document may already hold a classification that arrived before the profile.
            try:
                await self.store[CUSTOMERS].update_one(
                    {"_id": customer_id, "version": {"$exists": False}, "status": {"$exists": False}},
                    {"$set": doc}, upsert=True)
            except DuplicateKeyError:
                return False
            return True
        result = await self.store[CUSTOMERS].update_one(
            {"_id": customer_id, "version": expected_version, "status": {"$in": LISTED_STATUSES}}, {"$set": doc})
        return result.matched_count == 1

    async def create_many(self, new: list[tuple[str, CustomerProfile, str, domain.Applied | None]]) -> set[str]:
        """Profiles of customers with no document yet, ``(id, profile, cause, applied)``, in one
        insert: the ids written. An id that has a document after all (a replay, a classification
        that came first) is left as it is, for the caller's one-at-a-time path."""
        docs = []
        for customer_id, profile, cause, applied in new:
            doc = {"_id": customer_id, **self.profile_document(customer_id, profile, cause)}
            if applied is not None:
                doc.update(_applied_fields(applied))
            docs.append(doc)
        return {doc["_id"] for doc in docs} - await insert_new(self.store[CUSTOMERS], docs)

    async def note_applied(self, customer_id: str, applied: domain.Applied) -> None:
        await self.store[CUSTOMERS].update_one({"_id": customer_id}, {"$set": _applied_fields(applied)})

    def phone_index(self, phone: str) -> str:
        return self.cipher.blind_index("phone", domain.normalise_phone(phone))

    def email_index(self, email: str) -> str:
        return self.cipher.blind_index("email", domain.normalise_email(email))

    async def find_by_phone(self, phone: str) -> list[Stored]:
        return await self._find_by("phone_bidx", self.cipher.blind_indexes("phone", domain.normalise_phone(phone)))

    async def find_by_email(self, email: str) -> list[Stored]:
        return await self._find_by("email_bidx", self.cipher.blind_indexes("email", domain.normalise_email(email)))

    async def _find_by(self, field: str, indexes: list[str]) -> list[Stored]:
        """One equality lookup per blind-index key (the previous ones only while a rotation is
        under way), the first found of each customer kept."""
        found: dict[str, dict[str, Any]] = {}
        for blind_index in indexes:
            for doc in await self.store[CUSTOMERS].find(
                    {field: blind_index, "status": {"$in": LISTED_STATUSES}}).sort("_id").limit(50).to_list(None):
                found.setdefault(doc["_id"], doc)
        return [self.from_document(found[cid]) for cid in sorted(found)[:50]]

    async def list(self, *, tier: str | None, lifecycle: str | None, tag: str | None, needs: str | None,
                   after: tuple[int, str] | None, limit: int, industry: str | None = None,
                   region: str | None = None) -> list[Stored]:
        """Up to ``limit`` listed customers in (bucket, id) order, after the ``after`` cursor."""
        query: dict[str, Any] = {"status": {"$in": LISTED_STATUSES}}
        for field, value in (("tier", tier), ("lifecycle", lifecycle), ("tags", tag), ("needs", needs),
                             ("industry", industry), ("region", region)):
            if value is not None:
                query[field] = value
        first, after_id = after if after is not None else (0, None)
        found: list[dict[str, Any]] = []
        start, width = first, 1
        # One bucket usually fills a page; a sparse filter widens the walk a step at a time, so that
        # a page neither waits on sixteen buckets' reads nor runs sixteen rounds one after another.
        while start < LIST_BUCKETS and len(found) < limit:
            buckets = range(start, min(start + width, LIST_BUCKETS))
            pages = await asyncio.gather(*(self._bucket(query, b, after_id if b == first else None, limit)
                                           for b in buckets))
            found += [doc for page in pages for doc in page]
            start, width = buckets.stop, min(width * 4, _MOST_BUCKETS_AT_ONCE)
        # Only the page's customers are unsealed.
        return [self.from_document(doc) for doc in found[:limit]]

    async def _bucket(self, query: dict[str, Any], bucket: int, after_id: str | None,
                      limit: int) -> list[dict[str, Any]]:
        query = {**query, "list_bucket": bucket}
        if after_id is not None:
            query["_id"] = {"$gt": after_id}
        return await self.store[CUSTOMERS].find(query).sort("_id").limit(limit).to_list(None)

    async def erase(self, customer_id: str, *, at: datetime, version: int) -> None:
        """Drop every personal field; ids, status and the purchase amounts stay."""
        kept = {"status": "erased", "erased_at": at, "updated_at": at, "version": version}
        dropped = ["pii", "pii_kid", "phone_bidx", "email_bidx", "bidx_kid", "birthday", "locale", "timezone", "country",
                   "preferred_channel", "consents", "tags", "needs", "referred_by", "industry", "region",
                   "relationship_since", "account_manager"]
        await self.store[CUSTOMERS].update_one({"_id": customer_id},
                                               {"$set": kept, "$unset": {name: "" for name in dropped}})
        await self.store[TIMELINE].update_many({"customer_id": customer_id, "pii": {"$exists": True}},
                                               {"$unset": {"pii": "", "pii_kid": ""}})

    # --- classification and complaints -----------------------------------------------------------

    async def set_classification(self, customer_id: str, snapshot: dict[str, Any], updated_at: datetime, *,
                                 classified: bool) -> None:
        """Keep the newest snapshot: a replay of an older one changes nothing.

        ``classified`` says whether the document read before held a snapshot: then one conditional
        update; else an upsert that fails on a document a concurrent writer classified meanwhile.
        """
        fields = _classification_fields(snapshot, updated_at)
        if not classified:
            try:
                await self.store[CUSTOMERS].update_one(
                    {"_id": customer_id, "classified_at": {"$exists": False}}, {"$set": fields}, upsert=True)
                return
            except DuplicateKeyError:
                pass  # classified meanwhile: keep whichever is newer
        await self.store[CUSTOMERS].update_one(
            {"_id": customer_id, "classified_at": {"$lt": updated_at}}, {"$set": fields})

    async def set_classifications(self, items: list[tuple[str, dict[str, Any], datetime, bool, bool]]) -> None:
        """``set_classification`` of many customers, ``(id, snapshot, updated_at, classified, exists)``,
        in a few commands rather than one each: those with no document in one insert, the others in
        updates of many (an upsert that meets a duplicate key cannot share a command in FerretDB v1)."""
        absent = [{"_id": c, **_classification_fields(s, at)} for c, s, at, _, exists in items if not exists]
        taken = await insert_new(self.store[CUSTOMERS], absent)  # made meanwhile: updated below
        items = [item for item in items if item[4] or item[0] in taken]
        unclassified = [(c, s, at) for c, s, at, classified, _ in items if not classified]
        first = [UpdateOne({"_id": c, "classified_at": {"$exists": False}}, {"$set": _classification_fields(s, at)})
                 for c, s, at in unclassified]
        short = await update_in_commands(self.store[CUSTOMERS], first) < len(first)
        # Those classified meanwhile keep whichever is newer; one written just now matches nothing.
        newer = [(c, s, at) for c, s, at, classified, _ in items if classified or short]
        await update_in_commands(self.store[CUSTOMERS], [
            UpdateOne({"_id": c, "classified_at": {"$lt": at}}, {"$set": _classification_fields(s, at)})
            for c, s, at in newer])

    async def set_account_manager(self, customer_id: str, manager: dict[str, Any] | None, revision: int) -> None:
        """Keep the highest revision: an older one read late changes nothing. Not for an erased
        customer; a customer not known yet gets a document the profile joins later (as a
        classification does)."""
        fields = {"account_manager": manager, "account_manager_revision": revision}
        result = await self.store[CUSTOMERS].update_one(
            {"_id": customer_id, "account_manager_revision": {"$lt": revision}, "status": {"$ne": "erased"}},
            {"$set": fields})
        if result.matched_count:
            return
        try:
            await self.store[CUSTOMERS].update_one(
                {"_id": customer_id, "account_manager_revision": {"$exists": False}, "status": {"$ne": "erased"}},
                {"$set": fields}, upsert=True)
        except DuplicateKeyError:
            pass  # a newer revision is stored, or the customer was erased

    async def set_complaint(self, customer_id: str, complaint_id: str, fields: dict[str, Any], at: datetime) -> None:
        key = f"{customer_id}|{complaint_id}"
        # The newest event decides the status, whatever order the events arrive in: an older one
        # matches nothing and its upsert collides with the document that is there.
        try:
            await self.store[COMPLAINTS].update_one(
                {"_id": key, "at": {"$lt": at}},
                {"$set": {**fields, "at": at}, "$setOnInsert": {"customer_id": customer_id,
                                                                "complaint_id": complaint_id}},
                upsert=True)
        except DuplicateKeyError:
            pass

    async def complaints(self, customer_id: str) -> list[dict[str, Any]]:
        return await self.store[COMPLAINTS].find({"customer_id": customer_id}).to_list(None)

    # --- timeline --------------------------------------------------------------------------------

    async def add_entry(self, entry: dict[str, Any], *, summary: str | None = None) -> bool:
        """Record one timeline entry under its natural ``_id``; False when it was already there."""
        return await self.insert_entry(self.sealed_entry(entry, summary))

    async def insert_entry(self, doc: dict[str, Any]) -> bool:
        return await insert_once(self.store[TIMELINE], doc)

    def sealed_entry(self, entry: dict[str, Any], summary: str | None) -> dict[str, Any]:
        if not summary:
            return dict(entry)
        return self.cipher.seal_fields({**entry, "summary": summary}, ("summary",), collection=TIMELINE)

    async def add_entries(self, docs: Iterable[dict[str, Any]]) -> None:
        """Insert many timeline entries at once; those already there (a redelivery) stay as they are."""
        await insert_all(self.store[TIMELINE], list(docs))

    async def timeline(self, customer_id: str, *, before: tuple[datetime, str] | None, limit: int,
                       kinds: list[str] | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"customer_id": customer_id}
        if kinds:
            query["kind"] = {"$in": kinds}
        if before is not None:
            at, key = before
            query["$or"] = [{"at": {"$lt": at}}, {"at": at, "_id": {"$lt": key}}]
        newest_first = [("at", DESCENDING), ("_id", DESCENDING)]
        docs = await self.store[TIMELINE].find(query).sort(newest_first).limit(limit).to_list(None)
        return [self.cipher.open_fields(doc, collection=TIMELINE) for doc in docs]

    async def activity(self, customer_id: str) -> list[dict[str, Any]]:
        """Kind, time and amounts of every timeline entry, for the summary of the 360-degree view."""
        return await self.store[TIMELINE].find(
            {"customer_id": customer_id}, {"kind": 1, "at": 1, "amount": 1, "currency": 1, "_id": 0}).to_list(None)

    # --- consents --------------------------------------------------------------------------------

    async def record_consents(self, entries: list[dict[str, Any]]) -> None:
        await insert_all(self.store[CONSENTS], entries)

    async def consent_history(self, customer_id: str) -> list[dict[str, Any]]:
        entries = await self.store[CONSENTS].find({"customer_id": customer_id}, {"customer_id": 0}).to_list(None)
        # Oldest first; the changes of one profile version in the contract's order of consents.
        return sorted(entries, key=lambda e: (e["at"], e["version"], domain.CONSENT_KEYS.index(e["consent"])))

    # --- key rotation ----------------------------------------------------------------------------

    def _unrotated(self, collection: str) -> dict[str, Any]:
        """Documents with a value sealed under an old key or, for profiles, blind indexes made with
        an old blind-index key (or before indexes noted their key)."""
        stale = {"pii_kid": {"$nin": [None, self.cipher.active_key_id]}}
        if collection != CUSTOMERS:
            return stale
        return {"$or": [stale, {"bidx_kid": {"$ne": self.cipher.blind_key_id}, "status": {"$in": LISTED_STATUSES}}]}

    async def reseal_batch(self, collection: str, limit: int) -> tuple[int, int]:
        """Re-encrypt up to ``limit`` documents not yet under the active keys: (found, rewritten).

        The write is conditional on the key ids read, so a concurrent writer (which always seals
        with the active keys) or an erasure wins and nothing is overwritten with stale values.
        """
        active = self.cipher.active_key_id
        docs = await self.store[collection].find(
            self._unrotated(collection), {"pii": 1, "pii_kid": 1, "bidx_kid": 1}).limit(limit).to_list(None)
        done = 0
        for doc in docs:
            update: dict[str, Any] = {}
            if doc.get("pii_kid") not in (None, active):
                update.update(rotation.resealed(self.cipher, collection, doc))
            if collection == CUSTOMERS:
                opened = self.cipher.open_fields(dict(doc), collection=collection)
                update.update(self._blind_indexes(opened.get("phone"), opened.get("email")))
            read = {name: doc[name] if name in doc else {"$exists": False} for name in ("pii_kid", "bidx_kid")}
            result = await self.store[collection].update_one({"_id": doc["_id"], **read}, {"$set": update})
            done += result.modified_count
        return len(docs), done

    async def count_unrotated(self, collection: str) -> int:
        return await self.store[collection].count_documents(self._unrotated(collection))


def _applied_fields(applied: domain.Applied) -> dict[str, Any]:
    # Sub-documents, not pairs: FerretDB v1 refuses nested arrays.
    return {"applied": [{"id": event_id, "at": at} for event_id, at in applied.recent],
            "applied_floor": applied.floor}


def _classification_fields(snapshot: dict[str, Any], updated_at: datetime) -> dict[str, Any]:
    return {"classification": snapshot, "classified_at": updated_at, "tier": snapshot.get("value_tier"),
            "lifecycle": snapshot.get("lifecycle")}


def list_bucket(customer_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(customer_id.encode(), digest_size=2).digest()) % LIST_BUCKETS


async def insert_all(collection: Any, docs: list[dict[str, Any]]) -> None:
    """``insert_many`` that takes an ``_id`` already there as done (idempotent writes)."""
    await insert_new(collection, docs)


async def insert_new(collection: Any, docs: list[dict[str, Any]]) -> set[Any]:
    """``insert_many`` (unordered) of documents keyed by ``_id``: the ids that were there already."""
    if not docs:
        return set()
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", ())
        if exc.details.get("writeConcernErrors") or any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise
        return {docs[error["index"]]["_id"] for error in errors}
    return set()

