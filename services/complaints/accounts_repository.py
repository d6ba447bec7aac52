"""MongoDB access of the complaints service's accounts and return-visit tasks.

``accounts``: one document per customer: the profile fields the account rule reads (written by the
profile consumer with ``$set``, the newest profile version winning), the account manager with the
revision of the last change and its audit entries, and the outbox of that change. The manager's
fields are written only at the revision read, with ``$set`` too, so neither writer undoes the
other's fields.

``tasks``: one document per return visit, keyed by the visit's id; the outcome summary is sealed;
its outbox holds the ``return_visit`` interaction until it is published.

Every hot-path query is an equality on ``_id`` or on a declared index field (see ``repository``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from pymongo.errors import DuplicateKeyError

from shared import rotation
from shared.batch import Remembered
from shared.mongo import Index, Store, index, insert_once, set_if_newer
from shared.pii import PiiCipher

from .accounts import Account
from .visits import Task

INDEXES: list[Index] = [
    # A manager's customers: the loads the rule compares.
    index("accounts", "manager"),
    index("accounts", "pending"),
    # A person's open tasks: their work queue beside their complaints.
    index("tasks", "assignee", "open"),
    index("tasks", "customer_id"),
    index("tasks", "pending"),
]
#: Task text sealed at rest.
SEALED = ("summary",)
#: The account fields only a change of manager writes.
_MANAGER_FIELDS = ("manager", "manager_name", "revision", "history")
#: The most tasks one queue read returns to be ordered.
QUEUE_READ_CAP = 5000


class AccountsRepository:
    def __init__(self, store: Store, cipher: PiiCipher) -> None:
        self.cipher = cipher
        self.accounts = store["accounts"]
        self.tasks = store["tasks"]
        #: The rule's profile fields this process last stored per customer (only this consumer writes them).
        self.known_profiles: Remembered[str, tuple[dict[str, Any], int]] = Remembered()

    # --- accounts ------------------------------------------------------------------------------

    async def load(self, customer_id: str) -> tuple[Account, list[str]]:
        """The account (an empty one for a customer never seen) and its unsent outbox."""
        doc = await self.accounts.find_one({"_id": customer_id})
        if doc is None:
            return Account(customer_id=customer_id), []
        return Account.model_validate({**doc, "customer_id": customer_id}), list(doc.get("outbox") or [])

    async def manager(self, customer_id: str) -> str | None:
        doc = await self.accounts.find_one({"_id": customer_id}, {"manager": 1})
        return doc.get("manager") if doc else None

    async def put_profile(self, customer_id: str, fields: dict[str, Any], version: int) -> None:
        """The rule's profile fields at profile ``version``; an older version read late changes nothing
        (its upsert meets the newer document and fails on the duplicate key). Fields this process
        last stored for the customer are not written again (most profile changes are of other fields)."""
        await set_if_newer(self.accounts, customer_id, "profile_version", version, fields, self.known_profiles,
                           on_insert={"revision": 0})

    async def write_change(self, account: Account, outbox: list[str], *, expected_revision: int) -> bool:
        """The account's manager fields and outbox, if the stored revision is still ``expected_revision``
        (0: none yet, the document may not exist)."""
        fields = {**account.model_dump(include=set(_MANAGER_FIELDS)), "outbox": outbox, "pending": bool(outbox)}
        try:
            result = await self.accounts.update_one(
                {"_id": account.customer_id, "revision": expected_revision},
                {"$set": fields, "$setOnInsert": {"profile_version": 0}}, upsert=expected_revision == 0)
        except DuplicateKeyError:  # a change of another writer came first
            return False
        return result.matched_count == 1 or result.upserted_id is not None

    async def clear_outbox(self, customer_id: str, revision: int) -> None:
        await self.accounts.update_one({"_id": customer_id, "revision": revision},
                                       {"$set": {"outbox": [], "pending": False}})

    async def pending_accounts(self, limit: int = 500) -> list[tuple[str, int, list[str]]]:
        docs = await self.accounts.find({"pending": True}, {"revision": 1, "outbox": 1}).limit(limit).to_list(None)
        return [(d["_id"], d["revision"], list(d.get("outbox") or [])) for d in docs]

    async def loads(self, managers: Iterable[str]) -> dict[str, int]:
        """How many customers each manager looks after: one indexed lookup each."""
        managers = list(managers)

        async def count(manager: str) -> int:
            return len(await self.accounts.find({"manager": manager}, {"_id": 1}).to_list(None))

        return dict(zip(managers, await asyncio.gather(*map(count, managers)), strict=True))

    async def delete(self, customer_id: str) -> None:
        self.known_profiles.forget(customer_id)
        await self.accounts.delete_one({"_id": customer_id})

    # --- tasks ---------------------------------------------------------------------------------

    def _task_document(self, task: Task, outbox: list[str]) -> dict[str, Any]:
        doc = {"_id": task.task_id, **task.model_dump(exclude={"task_id"})}
        doc["due_on"] = task.due_on.isoformat()
        self.cipher.seal_fields(doc, SEALED, collection="tasks")
        doc.update(outbox=outbox, pending=bool(outbox), open=task.status == "open")
        return doc

    def _task(self, doc: dict[str, Any]) -> Task:
        opened = self.cipher.open_fields(dict(doc), collection="tasks")
        return Task.model_validate({**opened, "task_id": doc["_id"]})

    async def add_task(self, task: Task) -> bool:
        """Insert a new task; False when its id was there already."""
        return await insert_once(self.tasks, self._task_document(task, []))

    async def load_task(self, task_id: str) -> tuple[Task, list[str]] | None:
        doc = await self.tasks.find_one({"_id": task_id})
        return (self._task(doc), list(doc.get("outbox") or [])) if doc else None

    async def replace_task(self, task: Task, outbox: list[str], *, expected_revision: int) -> bool:
        result = await self.tasks.replace_one({"_id": task.task_id, "revision": expected_revision},
                                              self._task_document(task, outbox))
        return result.matched_count == 1

    async def clear_task_outbox(self, task_id: str, revision: int) -> None:
        await self.tasks.update_one({"_id": task_id, "revision": revision}, {"$set": {"outbox": [], "pending": False}})

    async def pending_tasks(self, limit: int = 500) -> list[tuple[str, int, list[str]]]:
        docs = await self.tasks.find({"pending": True}, {"revision": 1, "outbox": 1}).limit(limit).to_list(None)
        return [(d["_id"], d["revision"], list(d.get("outbox") or [])) for d in docs]

    async def open_tasks(self, assignee: str) -> list[Task]:
        """A person's open tasks, in no order (the queue orders them); summaries are not read."""
        cursor = self.tasks.find({"assignee": assignee, "open": True}, {"pii": 0, "pii_kid": 0, "outbox": 0})
        return [Task.model_validate({**d, "task_id": d["_id"]}) for d in await cursor.limit(QUEUE_READ_CAP).to_list(None)]

    async def erase_tasks(self, customer_id: str) -> int:
        """The customer's tasks without their outcome summaries."""
        result = await self.tasks.update_many({"customer_id": customer_id}, {"$set": {"pii": {}, "pii_kid": None}})
        return result.modified_count

    async def reseal_batch(self, limit: int) -> tuple[int, int]:
        return await rotation.reseal_batch(self.tasks, self.cipher, "tasks", limit)

    async def count_unrotated(self) -> int:
        return await self.tasks.count_documents(rotation.stale_fields(self.cipher))

