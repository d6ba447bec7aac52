"""MongoDB access of the notifications service's suppression list.

``suppressions``: one document per entry. A customer's entry is keyed by the customer id (and the
channel it stops); an address's or a number's by its blind index, with the value sealed, so that it
is found without being stored in clear. While the blind-index key rotates, an entry may still be
filed under a previous key's index: lookups try those too, and ``refile`` files it again under the
active keys.

Every hot-path query is an equality on ``_id`` or on a declared index field (see ``repository``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from shared.mongo import Index, Store, find_each, index
from shared.pii import PiiCipher, context

from .domain import Profile, SuppressionEntry

INDEXES: list[Index] = [index("suppressions", "customer_id")]


class SuppressionList:
    def __init__(self, store: Store, cipher: PiiCipher) -> None:
        self.cipher = cipher
        self.suppressions = store["suppressions"]

    async def entries_for(self, profiles: Iterable[Profile]) -> dict[str, list[SuppressionEntry]]:
        """Entries naming each customer (by ``customer_id``) or their address or number (by ``_id``)."""
        profiles = list(profiles)
        found = await asyncio.gather(*(self._entries_of(p) for p in profiles))
        return {p.customer_id: entries for p, entries in zip(profiles, found, strict=True) if entries}

    def entry_id(self, entry: SuppressionEntry) -> str:
        """A customer's entry by id (and channel); an address or number by its blind index."""
        return self._ids(entry)[0]

    def _ids(self, entry: SuppressionEntry) -> list[str]:
        """The entry's id, then (an address or number) its ids under the previous blind-index keys,
        where it may still be filed while a rotation is under way."""
        if entry.kind == "customer":
            return [f"customer:{entry.value}:{entry.channel}" if entry.channel else f"customer:{entry.value}"]
        return [f"{entry.kind}:{index}"
                for index in self.cipher.blind_indexes(entry.kind, _normalised(entry.kind, entry.value))]

    def _opened(self, doc: dict[str, Any]) -> dict[str, Any]:
        if isinstance(doc.get("value"), dict):
            doc = dict(doc, value=self.cipher.open(doc["value"], context=context("suppressions", doc["_id"], "value")))
        return doc

    async def _entries_of(self, p: Profile) -> list[SuppressionEntry]:
        ids = [i for kind, value in (("email", p.email), ("phone", p.phone)) if value
               for i in self._ids(SuppressionEntry(kind, value))]
        by_customer, by_contact = await asyncio.gather(
            self.suppressions.find({"customer_id": p.customer_id}).to_list(None), find_each(self.suppressions, ids))
        return [suppression_from_doc(self._opened(d)) for d in by_customer + by_contact]

    async def add(self, entry: SuppressionEntry, reason: str, at: datetime) -> dict[str, Any]:
        key = self.entry_id(entry)
        value: Any = (entry.value if entry.kind == "customer"
                      else self.cipher.seal(entry.value, context=context("suppressions", key, "value")))
        doc = {"_id": key, "kind": entry.kind, "value": value, "channel": entry.channel,
               "all_messages": entry.all_messages, "reason": reason, "created_at": at,
               "customer_id": entry.value if entry.kind == "customer" else None,
               "bidx_kid": self.cipher.blind_key_id if entry.kind != "customer" else None}
        await self.suppressions.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        return self._opened(doc)

    async def remove(self, entry_id: str) -> bool:
        return (await self.suppressions.delete_one({"_id": entry_id})).deleted_count == 1

    async def entries(self, kind: str | None, limit: int) -> list[dict[str, Any]]:
        docs = await self.suppressions.find({"kind": kind} if kind else {}).sort("_id", 1).limit(limit).to_list(None)
        return [self._opened(d) for d in docs]

    async def erase(self, customer_id: str) -> None:
        """The customer's own entries; an address or number entry names nobody and stays."""
        await self.suppressions.delete_many({"customer_id": customer_id})

    # --- key rotation -------------------------------------------------------------------------------

    def _unfiled(self) -> dict[str, Any]:
        """Address and number entries sealed under an old key or filed under an old blind index."""
        return {"kind": {"$in": ["email", "phone"]},
                "$or": [{"bidx_kid": {"$ne": self.cipher.blind_key_id}},
                        {"value.k": {"$ne": self.cipher.active_key_id}}]}

    async def refile(self, limit: int) -> tuple[int, int]:
        """Up to ``limit`` address and number entries filed again under the active keys (a new id
        when the blind index changes, the old one removed after): (found, refiled)."""
        docs = await self.suppressions.find(self._unfiled()).limit(limit).to_list(None)
        for doc in docs:
            opened = self._opened(dict(doc))
            entry = SuppressionEntry(doc["kind"], opened["value"], channel=doc.get("channel"),
                                     all_messages=doc.get("all_messages", False))
            added = await self.add(entry, doc.get("reason") or "", doc["created_at"])
            if added["_id"] != doc["_id"]:
                await self.suppressions.delete_one({"_id": doc["_id"]})
        return len(docs), len(docs)

    async def count_unfiled(self) -> int:
        return await self.suppressions.count_documents(self._unfiled())


def _normalised(kind: str, value: str) -> str:
    return value.strip().lower() if kind == "email" else "".join(value.split())


def suppression_from_doc(doc: dict[str, Any]) -> SuppressionEntry:
    return SuppressionEntry(kind=doc["kind"], value=doc["value"], channel=doc.get("channel"),
                            all_messages=bool(doc.get("all_messages")))
