"""MongoDB access of the notifications service.

Collections: ``customers`` (this service's copy of what it needs of a profile; name, e-mail and
phone sealed under the service's own keys), ``notifications`` (one document per dedupe key: the
request and its state; no personal data), ``outcomes`` (sent or failed, per dedupe key: written in
one insert per batch, because FerretDB commits every single update on its own and a fan-out of
updates crawls), ``staff_alerts`` (one document per staff alert: its state and, sealed, whom it
reaches) and ``scheduler_runs`` (daily runs per time zone done, and the list of time zones
customers live in). The suppression list (``suppressions``) is kept by the repository's
``suppression_list`` (``suppressions_repository``).

Every query on a hot path holds an equality on ``_id`` or on a declared index field that selects
few rows: FerretDB v1 hands PostgreSQL only top-level scalar equalities and filters everything else
(``$in``, ``$or``, ranges, ...) in Go after reading every row the equalities select, so a query
without one reads the whole collection. Several keys are therefore looked up one ``find_one`` each,
concurrently; ranges stay beside a per-customer equality; deferred records are found by the minute
they are due (``due_slot``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import structlog
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared import rotation
from shared.mongo import DUPLICATE_KEY, Index, Store, find_each, index, insert_once, update_in_commands
from shared.pii import PiiCipher, UnknownKey

from . import alerts, suppressions_repository
from .domain import Profile, Request, repeat_key

log = structlog.get_logger(__name__)

INDEXES: list[Index] = [
    index("customers", "timezone"),
    index("notifications", "customer_id", "created_at"),
    index("notifications", "due_slot"),
    *suppressions_repository.INDEXES,
    index("outcomes", "customer_id", "created_at"),
    index("staff_alerts", "due_slot"),
    index("staff_alerts", "customer_id"),
    index("survey_answers", "customer_id"),
]
#: States that count against the frequency cap: sent, being sent, or planned.
COUNTED = ("sent", "sending", "deferred")
#: The ``scheduler_runs`` document listing every time zone customers were stored with.
TIMEZONES = "timezones"
#: Profile fields sealed at rest.
SEALED = ("name", "email", "phone")


def due_slot(at: datetime) -> str:
    """The minute (UTC) a deferred record is due in: the equality key the scheduler finds it by."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def profile_doc(profile: Profile, timezone: str) -> dict[str, Any]:
    return {
        "_id": profile.customer_id, "name": profile.name, "email": profile.email, "phone": profile.phone,
        "locale": profile.locale, "timezone": timezone, "own_timezone": profile.timezone,
        "country": profile.country, "preferred_channel": profile.preferred_channel,
        "consents": dict(profile.consents), "birthday": profile.birthday.isoformat() if profile.birthday else None,
        "value_tier": profile.value_tier, "vip": profile.vip,
        "since": profile.since.isoformat() if profile.since else None, "account_manager": profile.account_manager,
        "prospect": profile.prospect,
    }


def profile_from_doc(doc: dict[str, Any]) -> Profile:
    return Profile(
        customer_id=doc["_id"], name=doc.get("name"), email=doc.get("email"), phone=doc.get("phone"),
        locale=doc.get("locale"), timezone=doc.get("own_timezone"), country=doc.get("country"),
        preferred_channel=doc.get("preferred_channel"), consents=doc.get("consents") or {},
        birthday=date.fromisoformat(doc["birthday"]) if doc.get("birthday") else None,
        value_tier=doc.get("value_tier"), vip=doc.get("vip"),
        since=date.fromisoformat(doc["since"]) if doc.get("since") else None,
        account_manager=doc.get("account_manager"), prospect=bool(doc.get("prospect")),
        known="timezone" in doc,  # written with every profile, never by a tier change alone
    )


def request_doc(request: Request) -> dict[str, Any]:
    return {
        "customer_id": request.customer_id, "family": request.family, "trigger": request.trigger,
        "template": request.template, "source_id": request.source_id,
        "params": dict(request.params),
        "not_before": request.not_before, "transactional": request.transactional,
    }


def request_from_doc(doc: dict[str, Any]) -> Request:
    return Request(customer_id=doc["customer_id"], family=doc["family"], trigger=doc["trigger"],
                   template=doc["template"], dedupe_key=doc["_id"], source_id=doc["source_id"],
                   params=doc.get("params") or {}, not_before=doc.get("not_before"),
                   asked_at=doc.get("created_at"))


class Repository:
    def __init__(self, store: Store, cipher: PiiCipher) -> None:
        self.store = store
        self.cipher = cipher
        self.customers = store["customers"]
        self.notifications = store["notifications"]
        self.survey_answers = store["survey_answers"]
        self.runs = store["scheduler_runs"]
        self.outcomes = store["outcomes"]
        self.staff_alerts = store["staff_alerts"]
        self._zones_noted: set[str] = set()
        self.suppression_list = suppressions_repository.SuppressionList(store, cipher)

    # --- customers --------------------------------------------------------------------------------

    def profile_document(self, profile: Profile, timezone: str) -> dict[str, Any]:
        """The stored form of a profile: its personal fields sealed."""
        return self.cipher.seal_fields(profile_doc(profile, timezone), SEALED, collection="customers")

    def _profile(self, doc: dict[str, Any]) -> Profile:
        return profile_from_doc(self.cipher.open_fields(dict(doc), collection="customers"))

    async def profile(self, customer_id: str) -> Profile | None:
        doc = await self.customers.find_one({"_id": customer_id})
        return self._profile(doc) if doc else None

    async def profiles(self, customer_ids: Iterable[str]) -> dict[str, Profile]:
        docs = await find_each(self.customers, set(customer_ids))
        return {d["_id"]: self._profile(d) for d in docs}

    async def save_profile(self, profile: Profile, timezone: str) -> None:
        await self.save_profiles([(profile, timezone)])

    async def save_profiles(self, profiles: Sequence[tuple[Profile, str]]) -> None:
        """Each customer's profile with its time zone, a few per write command (a batch's customers)."""
        # Tiers and the account manager come from other topics, concurrently: a profile update
        # leaves them alone.
        updates = []
        for profile, timezone in profiles:
            doc = self.profile_document(profile, timezone)
            fields = {k: v for k, v in doc.items() if k not in ("_id", "value_tier", "vip", "account_manager")}
            updates.append(UpdateOne({"_id": doc["_id"]}, {"$set": fields}, upsert=True))
        # The zones first: a stop between the two writes leaves no customer in a zone the list lacks.
        await self.note_timezones([timezone for _, timezone in profiles])
        await update_in_commands(self.customers, updates)

    async def save_tiers(self, tiers: Mapping[str, Mapping[str, str]]) -> None:
        """Each customer's current value per dimension (``value_tier``, ``vip``). Upserts: a tier
        change may arrive before the profile does."""
        await update_in_commands(self.customers, [UpdateOne({"_id": customer_id}, {"$set": dict(values)}, upsert=True)
                                                  for customer_id, values in tiers.items()])

    async def save_account_manager(self, customer_id: str, manager: str | None, revision: int) -> None:
        """The highest revision wins: an older change read late changes nothing. Upserted, as a tier
        is: the change may arrive before the profile does."""
        fields = {"account_manager": manager, "account_manager_revision": revision}
        result = await self.customers.update_one(
            {"_id": customer_id, "account_manager_revision": {"$lt": revision}}, {"$set": fields})
        if result.matched_count:
            return
        try:
            await self.customers.update_one({"_id": customer_id, "account_manager_revision": {"$exists": False}},
                                            {"$set": fields}, upsert=True)
        except DuplicateKeyError:
            pass  # a newer revision is stored

    async def erase(self, customer_id: str) -> None:
        # The profile goes last: once it is gone, everything else about the customer is too.
        await asyncio.gather(self.notifications.delete_many({"customer_id": customer_id}),
                             self.outcomes.delete_many({"customer_id": customer_id}),
                             self.suppression_list.erase(customer_id),
                             self.staff_alerts.delete_many({"customer_id": customer_id}),
                             self.survey_answers.delete_many({"customer_id": customer_id}))
        await self.customers.delete_one({"_id": customer_id})

    async def has_timezones(self) -> bool:
        return await self.runs.find_one({"_id": TIMEZONES}, {"_id": 1}) is not None

    async def timezones(self) -> list[str]:
        doc = await self.runs.find_one({"_id": TIMEZONES})
        return sorted(doc.get("zones") or []) if doc else []

    async def note_timezones(self, zones: Iterable[str]) -> None:
        """Add time zones to the stored list; each process writes a zone once (``$addToSet``)."""
        new = sorted(set(zones) - self._zones_noted)
        if new:
            await self.runs.update_one({"_id": TIMEZONES}, {"$addToSet": {"zones": {"$each": new}}}, upsert=True)
            self._zones_noted.update(new)

    async def rebuild_timezones(self) -> None:
        """One read of all customers: the list then also holds zones stored by a version that did
        not keep it (a store written before the list existed)."""
        groups = await (await self.customers.aggregate(
            [{"$group": {"_id": "$timezone", "n": {"$sum": 1}}}])).to_list(None)
        self._zones_noted.clear()
        await self.note_timezones(g["_id"] for g in groups if g["_id"])

    async def customers_in(self, timezone: str, batch: int) -> AsyncIterator[list[Profile]]:
        """Every customer of a time zone, a batch at a time (memory stays bounded by the batch).

        One cursor read to the end: paging with ``_id > last`` and a sort makes FerretDB v1 scan the
        whole collection for every page."""
        async for chunk in _chunks(self.customers.find({"timezone": timezone}, batch_size=batch), batch):
            profiles, unreadable = [], []
            for doc in chunk:
                try:
                    profiles.append(self._profile(doc))
                except (ValueError, UnknownKey):
                    unreadable.append(doc["_id"])
            if unreadable:
                # A document that cannot be opened is its customer's loss alone: failing the pass
                # would stop the zone's messages and read it all again at every scheduler restart.
                log.warning("customers_unreadable_skipped", timezone=timezone, customers=len(unreadable),
                            customer_ids=unreadable[:5])
            yield profiles

    # --- notifications ----------------------------------------------------------------------------

    async def by_keys(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        return await self._with_outcomes(await find_each(self.notifications, set(keys)))

    async def _with_outcomes(self, docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The records with the outcome of those that were sent or failed merged in."""
        sending = [d["_id"] for d in docs if d["status"] == "sending"]
        outcomes = {o["_id"]: o for o in await find_each(self.outcomes, sending)}
        return {d["_id"]: {**d, **outcomes.get(d["_id"], {})} for d in docs}

    async def care_history(self, customer_ids: Iterable[str], since: datetime, repeat_since: datetime,
                           excluding: Sequence[str]) -> tuple[dict[str, int], dict[tuple[str, str], datetime]]:
        """Per customer, the care messages sent, being sent or planned (failed ones and ``excluding``
        left out): how many since ``since`` (the frequency cap), and when each message (its repeat
        key) was last asked for since ``repeat_since``. One query per customer (``customer_id``
        equality, the rest beside it)."""
        skip = set(excluding)
        found = await asyncio.gather(*(self._care_history(c, min(since, repeat_since), skip)
                                       for c in set(customer_ids)))
        counts: dict[str, int] = {}
        last: dict[tuple[str, str], datetime] = {}
        for customer_id, docs in found:
            if n := sum(1 for d in docs if d["created_at"] >= since):
                counts[customer_id] = n
            for d in docs:
                key = (customer_id, repeat_key(d["trigger"], d.get("params") or {}))
                if d["created_at"] >= repeat_since and (key not in last or d["created_at"] > last[key]):
                    last[key] = d["created_at"]
        return counts, last

    async def _care_history(self, customer_id: str, since: datetime,
                            excluding: set[str]) -> tuple[str, list[dict[str, Any]]]:
        docs = await self.notifications.find(
            {"customer_id": customer_id, "created_at": {"$gte": since}, "transactional": False},
            {"status": 1, "reason": 1, "created_at": 1, "trigger": 1, "params": 1}).to_list(None)
        # A message scheduled for a later day (a survey after a purchase) counts once it is due.
        docs = [d for d in docs if d["status"] in COUNTED and d["_id"] not in excluding
                and not (d["status"] == "deferred" and d.get("reason") == "scheduled")]
        if any(d["status"] == "sending" for d in docs):  # sent or failed: the outcome tells
            # One whose sending was interrupted may have reached the customer: it still counts.
            failed = {o["_id"] for o in await self.outcomes.find(
                {"customer_id": customer_id, "status": "failed", "created_at": {"$gte": since}},
                {"_id": 1, "reason": 1}).to_list(None) if o.get("reason") != "interrupted"}
            docs = [d for d in docs if d["_id"] not in failed]
        return customer_id, docs

    async def claim(self, docs: Sequence[dict[str, Any]]) -> set[str]:
        """Insert new records; the keys of those this call wrote (the others already existed)."""
        if not docs:
            return set()
        try:
            await self.notifications.insert_many(list(docs), ordered=False)
        except BulkWriteError as exc:
            failed = {docs[e["index"]]["_id"] for e in exc.details.get("writeErrors", []) if e.get("code") == DUPLICATE_KEY}
            if len(failed) != len(exc.details.get("writeErrors", [])):
                raise
            return {d["_id"] for d in docs} - failed
        return {d["_id"] for d in docs}

    async def claim_deferred(self, key: str, fields: dict[str, Any]) -> bool:
        """Move a deferred record on to sending; False when another worker already did."""
        result = await self.notifications.update_one({"_id": key, "status": "deferred"}, {"$set": fields})
        return result.modified_count == 1

    async def retry_later(self, keys: Sequence[str], due_at: datetime) -> None:
        """Back to deferred records that the scheduler resumes at ``due_at``: their providers could
        not be reached. Only records still being sent: the outcome of another worker stands."""
        fields = {"status": "deferred", "reason": "provider_unreachable", "due_at": due_at, "due_slot": due_slot(due_at)}
        await asyncio.gather(*(self.notifications.update_one({"_id": key, "status": "sending"}, {"$set": fields})
                               for key in set(keys)))

    async def insert_once(self, doc: dict[str, Any]) -> bool:
        try:
            await self.notifications.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def record_outcomes(self, docs: Sequence[dict[str, Any]]) -> None:
        """Sent or failed, one insert for the whole batch; a repeat after a crash keeps the first."""
        if not docs:
            return
        try:
            await self.outcomes.insert_many(list(docs), ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise

    async def due_in(self, slot: str, now: datetime, batch: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Deferred records due by ``now`` in the minute ``slot``, a batch at a time."""
        async for chunk in _chunks(self.notifications.find(
                {"due_slot": slot, "status": "deferred", "due_at": {"$lte": now}}, batch_size=batch), batch):
            yield chunk

    async def all_deferred(self, batch: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Every deferred record, a batch at a time: the scheduler's one pass at start."""
        async for chunk in _chunks(self.notifications.find({"status": "deferred"}, batch_size=batch), batch):
            yield chunk

    async def set_due_slots(self, docs: Iterable[dict[str, Any]]) -> None:
        """Give records deferred by an earlier version the key the scheduler finds them by."""
        await asyncio.gather(*(self.notifications.update_one(
            {"_id": d["_id"], "status": "deferred"}, {"$set": {"due_slot": due_slot(d["due_at"])}}) for d in docs))

    async def cancel_pending(self, key: str) -> None:
        await self.notifications.delete_one({"_id": key, "status": "deferred"})

    async def history(self, customer_id: str, limit: int) -> list[dict[str, Any]]:
        docs = await self.notifications.find({"customer_id": customer_id}).sort("created_at", -1) \
            .limit(limit).to_list(None)
        return list((await self._with_outcomes(docs)).values())

    async def with_triggers(self, triggers: Sequence[str]) -> list[dict[str, Any]]:
        """Every record of these triggers with its outcome (a report's read of the whole collection)."""
        docs = await self.notifications.find(
            {"trigger": {"$in": list(triggers)}},
            {"customer_id": 1, "trigger": 1, "status": 1, "reason": 1, "created_at": 1}).to_list(None)
        return list((await self._with_outcomes(docs)).values())

    async def report(self, since: datetime | None) -> list[dict[str, Any]]:
        since_filter: dict[str, Any] = {"created_at": {"$gte": since}} if since else {}
        group = {"$group": {"_id": {"status": "$status", "reason": "$reason", "channel": "$channel"},
                            "count": {"$sum": 1}}}
        # Records being sent are counted by their outcome once there is one.
        pending = await (await self.notifications.aggregate(
            [{"$match": {**since_filter, "status": {"$ne": "sending"}}}, group])).to_list(None)
        done = await (await self.outcomes.aggregate([{"$match": since_filter}, group])).to_list(None)
        return pending + done

    # --- staff alerts -------------------------------------------------------------------------------

    def _staff_alert(self, doc: dict[str, Any]) -> dict[str, Any]:
        return self.cipher.open_fields(dict(doc), collection="staff_alerts")

    async def staff_alert(self, key: str) -> dict[str, Any] | None:
        doc = await self.staff_alerts.find_one({"_id": key})
        return self._staff_alert(doc) if doc else None

    async def claim_staff_alert(self, message: alerts.StaffMessage, at: datetime) -> bool:
        """Record an alert as being sent; False when its record exists (another delivery has it)."""
        doc = {**alerts.message_doc(message), "status": "sending", "created_at": at}
        sealed = self.cipher.seal_fields(doc, alerts.SEALED, collection="staff_alerts")
        return await insert_once(self.staff_alerts, sealed)

    async def claim_deferred_staff_alert(self, key: str) -> bool:
        result = await self.staff_alerts.update_one({"_id": key, "status": "deferred"}, {"$set": {"status": "sending"}})
        return result.modified_count == 1

    async def finish_staff_alert(self, key: str, fields: dict[str, Any]) -> None:
        """The outcome of a send (sent, failed, or deferred with ``due_at``) of a record being sent."""
        if fields.get("due_at") is not None:
            fields = {**fields, "due_slot": due_slot(fields["due_at"])}
        await self.staff_alerts.update_one({"_id": key, "status": "sending"}, {"$set": fields})

    async def staff_alerts_due_in(self, slot: str, now: datetime) -> list[dict[str, Any]]:
        docs = await self.staff_alerts.find(
            {"due_slot": slot, "status": "deferred", "due_at": {"$lte": now}}).to_list(None)
        return [self._staff_alert(d) for d in docs]

    async def deferred_staff_alerts(self) -> list[dict[str, Any]]:
        """Every deferred alert: the scheduler's one pass at start."""
        return [self._staff_alert(d) for d in await self.staff_alerts.find({"status": "deferred"}).to_list(None)]

    # --- survey answers -----------------------------------------------------------------------------

    async def record_survey_answer(self, interaction_id: str, customer_id: str, complaint_id: str | None,
                                   at: datetime, survey: str | None = None) -> bool:
        """Note a survey link (a complaint's, or a general one's ``survey``) as answered; False when it
        was answered before."""
        return await insert_once(self.survey_answers, {"_id": interaction_id, "customer_id": customer_id,
                                                       "complaint_id": complaint_id, "survey": survey, "at": at})

    async def withdraw_deferred(self, key: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        """Suppress a message still waiting to be sent (``fields`` say why); the record as it was, or
        None when there is none waiting (never asked, already sent, or withdrawn before)."""
        doc = await self.notifications.find_one({"_id": key})
        if doc is None or doc["status"] != "deferred":
            return None
        result = await self.notifications.update_one({"_id": key, "status": "deferred"}, {"$set": fields})
        return doc if result.modified_count == 1 else None

    # --- key rotation -------------------------------------------------------------------------------

    async def reseal_batch(self, name: str, limit: int) -> tuple[int, int]:
        """Up to ``limit`` documents of ``customers`` or ``staff_alerts`` put under the active key."""
        return await rotation.reseal_batch(self.store[name], self.cipher, name, limit)

    async def count_unrotated(self, name: str) -> int:
        return await self.store[name].count_documents(rotation.stale_fields(self.cipher))

    # --- scheduler ----------------------------------------------------------------------------------

    async def run_done(self, run_id: str) -> bool:
        return await self.runs.find_one({"_id": run_id}) is not None

    async def mark_run(self, run_id: str, at: datetime, count: int) -> None:
        await self.runs.replace_one({"_id": run_id}, {"_id": run_id, "done_at": at, "requests": count}, upsert=True)


async def _chunks(cursor: Any, size: int) -> AsyncIterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    async for doc in cursor:
        chunk.append(doc)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
