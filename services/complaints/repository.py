"""MongoDB access of the complaints service.

A complaint is one document keyed by its id. Writes replace it only at the revision it was read at
(optimistic concurrency, no transactions), together with its outbox: the lifecycle events the
change causes, kept until they are published so that a crash between write and publish loses none.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import DESCENDING

from shared.mongo import Index, Store, index, insert_once

from .domain import Complaint

INDEXES: list[Index] = [
    index("complaints", "customer_id", ("opened_at", DESCENDING)),
    index("complaints", "status", ("opened_at", DESCENDING)),
    index("complaints", "next_check_at"),
    index("complaints", "pending"),
    index("complaints", "opened_at"),
    index("tiers", "updated_at"),
]


def _document(complaint: Complaint, outbox: list[str]) -> dict[str, Any]:
    doc = complaint.model_dump()
    doc["_id"] = complaint.complaint_id
    doc["outbox"] = outbox
    doc["pending"] = bool(outbox)
    return doc


class Repository:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.complaints = store["complaints"]
        self.tiers = store["tiers"]

    async def load(self, complaint_id: str) -> tuple[Complaint, list[str]] | None:
        doc = await self.complaints.find_one({"_id": complaint_id})
        if doc is None:
            return None
        return Complaint.model_validate(doc), list(doc.get("outbox") or [])

    async def get(self, complaint_id: str) -> Complaint | None:
        loaded = await self.load(complaint_id)
        return loaded[0] if loaded else None

    async def insert(self, complaint: Complaint, outbox: list[str]) -> bool:
        return await insert_once(self.complaints, _document(complaint, outbox))

    async def replace(self, complaint: Complaint, outbox: list[str], *, expected_revision: int) -> bool:
        result = await self.complaints.replace_one(
            {"_id": complaint.complaint_id, "revision": expected_revision}, _document(complaint, outbox))
        return result.matched_count == 1

    async def clear_outbox(self, complaint_id: str, revision: int) -> None:
        # A newer revision carries these events in its own outbox and publishes them itself.
        await self.complaints.update_one({"_id": complaint_id, "revision": revision},
                                         {"$set": {"outbox": [], "pending": False}})

    async def due(self, now: datetime, limit: int = 500) -> list[str]:
        cursor = self.complaints.find({"next_check_at": {"$lte": now}}, {"_id": 1}).limit(limit)
        return [doc["_id"] for doc in await cursor.to_list(None)]

    async def pending(self, limit: int = 500) -> list[tuple[str, int]]:
        cursor = self.complaints.find({"pending": True}, {"_id": 1, "revision": 1}).limit(limit)
        return [(doc["_id"], doc["revision"]) for doc in await cursor.to_list(None)]

    async def search(self, *, status: str | None = None, breached: bool | None = None, customer: str | None = None,
                     limit: int = 100) -> list[Complaint]:
        query: dict[str, Any] = {}
        if status:
            query["status"] = status
        if breached is not None:
            query["breached"] = breached
        if customer:
            query["customer_id"] = customer
        cursor = self.complaints.find(query).sort("opened_at", DESCENDING).limit(limit)
        return [Complaint.model_validate(doc) for doc in await cursor.to_list(None)]

    async def opened_between(self, start: datetime, end: datetime) -> list[Complaint]:
        cursor = self.complaints.find({"opened_at": {"$gte": start, "$lt": end}})
        return [Complaint.model_validate(doc) for doc in await cursor.to_list(None)]

    async def ids_of_customer(self, customer_id: str) -> list[str]:
        cursor = self.complaints.find({"customer_id": customer_id}, {"_id": 1})
        return [doc["_id"] for doc in await cursor.to_list(None)]

    async def latest_resolved(self, customer_id: str) -> str | None:
        doc = await self.complaints.find_one({"customer_id": customer_id, "status": {"$in": ["resolved", "closed"]}},
                                             {"_id": 1}, sort=[("opened_at", DESCENDING)])
        return doc["_id"] if doc else None

    # --- The customer's current tier, from the compacted classification topic ---------------

    async def tier(self, customer_id: str) -> str | None:
        doc = await self.tiers.find_one({"_id": customer_id})
        return doc.get("tier") if doc else None

    async def put_tier(self, customer_id: str, tier: str | None, updated_at: datetime) -> None:
        """Keep the newest snapshot only: an older one read late changes nothing."""
        await self.tiers.update_one({"_id": customer_id}, {"$setOnInsert": {"updated_at": updated_at, "tier": tier}},
                                    upsert=True)
        await self.tiers.update_one({"_id": customer_id, "updated_at": {"$lt": updated_at}},
                                    {"$set": {"updated_at": updated_at, "tier": tier}})

    async def delete_tier(self, customer_id: str) -> None:
        await self.tiers.delete_one({"_id": customer_id})
