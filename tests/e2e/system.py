"""The four services as separate processes against the real broker and store, and what the
end-to-end tests need to drive and observe them: customers with personal data, the HTTP APIs, the
SMTP sink, the consumer groups' progress and the raw documents of every service database.

Every run gets a token: its consumer groups and databases are new (``carecrm-e2e-<token>-<service>``,
``carecrm_e2e_<token>_<service>``) and its customer ids carry it, so runs never see each other's data
although the topics are the real, shared ones.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import phonenumbers
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from shared.contract.topics import (
    CRM_ACCOUNT_MANAGERS,
    CRM_CARE_TASKS,
    CRM_COMPLAINT_INTAKE,
    CRM_COMPLAINTS,
    CRM_CUSTOMER_INTAKE,
    CRM_CUSTOMER_TIERS,
    CRM_CUSTOMERS,
    CRM_INTERACTIONS,
    CRM_NOTIFICATIONS,
    CRM_TIER_CHANGES,
    ORDERS_PURCHASES,
)
from shared.kafka import ensure_topics
from shared.settings import ServiceSettings
from tests.doubles import SmtpSink
from tests.helpers import envelope, eventually, produce, purchase, skip_backlog
from tests.processes import ServiceProcess, free_port

#: How long a journey waits for one step to cross the services: four service processes share a
#: small machine with the broker and the store, and a CI machine can be slower still.
WAIT = 60.0

SERVICES = ("customer", "tiering", "complaints", "notifications")
#: What each service consumes, so that its fresh groups can be set at the end of these topics before
#: it starts. ``System.check_subscriptions`` compares this with what the running services announce.
SUBSCRIPTIONS: Mapping[str, tuple[str, ...]] = {
    "customer": (CRM_CUSTOMER_INTAKE, ORDERS_PURCHASES, CRM_INTERACTIONS, CRM_CUSTOMER_TIERS, CRM_COMPLAINTS,
                 CRM_NOTIFICATIONS, CRM_ACCOUNT_MANAGERS),
    "tiering": (ORDERS_PURCHASES, CRM_INTERACTIONS, CRM_COMPLAINTS, CRM_CUSTOMERS),
    "complaints": (CRM_COMPLAINT_INTAKE, CRM_CUSTOMER_TIERS, CRM_CUSTOMERS, CRM_INTERACTIONS, CRM_CARE_TASKS),
    "notifications": (CRM_CUSTOMERS, CRM_TIER_CHANGES, CRM_COMPLAINTS, CRM_INTERACTIONS, CRM_CUSTOMER_TIERS,
                      CRM_ACCOUNT_MANAGERS, ORDERS_PURCHASES),
}
SCOPES = ("customers:read", "customers:write", "customers:erase", "pii:read", "tiers:read", "tiers:write",
          "policy:write", "complaints:read", "complaints:write", "notifications:read", "notifications:write")


def valid_mobile() -> str:
    """A random Chinese mobile number in E.164 that the contract's phone check accepts."""
    while True:
        number = f"+86139{random.randrange(10**8):08d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(number)):
            return number


@dataclass
class Person:
    """A test customer and the personal data no log and, after erasure, no database may hold."""

    label: str
    customer_id: str
    name: str
    phone: str
    email: str
    address: str
    locale: str | None = None
    country: str = "CN"

    def profile(self, **extra: Any) -> dict[str, Any]:
        """Registration data: e-mail first, with consent to care messages by e-mail."""
        data: dict[str, Any] = {
            "name": self.name, "phone": self.phone, "email": self.email, "address": self.address,
            "country": self.country, "preferred_channel": "email",
            "consents": {"email": True, "sms": False, "care_messages": True},
        }
        if self.locale:
            data["locale"] = self.locale
        return {**data, **extra}

    @property
    def personal_data(self) -> dict[str, str]:
        """Each personal value in the forms a store or a log could hold it."""
        return {"name": self.name, "phone": self.phone, "phone digits": self.phone.lstrip("+"),
                "email": self.email, "email (lower case)": self.email.lower(), "address": self.address}


@dataclass
class System:
    token: str
    bootstrap: str
    mongodb_url: str
    log_dir: Path
    work_dir: Path
    smtp: SmtpSink
    smtp_port: int
    api_key: str
    api_keys_setting: str
    sla_policies: list[dict[str, Any]]
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    people: list[Person] = field(default_factory=list)
    http: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    mongo: AsyncMongoClient[dict[str, Any]] | None = None
    admin: AIOKafkaAdminClient | None = None
    reader: AIOKafkaConsumer | None = None
    #: Held while the population cut-offs are recomputed, and by whoever needs them not to move.
    population: asyncio.Lock = field(default_factory=asyncio.Lock)
    _settings: dict[str, ServiceSettings] = field(default_factory=dict)

    # --- names -------------------------------------------------------------------------------------

    def group_prefix(self, service: str) -> str:
        return f"carecrm-e2e-{self.token}-{service}"

    def group(self, service: str, topic: str) -> str:
        settings = self._settings.get(service)
        if settings is None:
            settings = self._settings[service] = ServiceSettings(service_name=service,
                                                                 kafka_group_id=self.group_prefix(service))
        return settings.group_for(topic)

    def database(self, service: str) -> str:
        return f"carecrm_e2e_{self.token}_{service}"

    def environment(self, service: str, closed_port: int) -> dict[str, str]:
        """Settings of one process, with the service's prefix where they are its own."""
        prefix = service.upper()
        env = {
            "API_KEYS": self.api_keys_setting,
            "LOG_LEVEL": "INFO",
            f"{prefix}_KAFKA_GROUP_ID": self.group_prefix(service),
            f"{prefix}_MONGODB_DATABASE": self.database(service),
        }
        if service == "tiering":
            env.update({
                "TIERING_SCHEDULER_INTERVAL_S": "1",
                # Cut-offs move only when a test asks for a refresh, so that no test sees them move under it.
                "TIERING_REFRESH_INTERVAL_S": "0",
            })
        elif service == "complaints":
            env.update({
                "COMPLAINTS_SCHEDULER_INTERVAL_S": "0.5",
                "COMPLAINTS_SLA_POLICIES": json.dumps(self.sla_policies),
                "COMPLAINTS_SLA_POLICY_VERSION": "e2e",
            })
        elif service == "notifications":
            env.update({
                "NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
                "NOTIFICATIONS_SMTP_PORT": str(self.smtp_port),
                "NOTIFICATIONS_SCHEDULER_INTERVAL_S": "1",
                # No quiet hours and no holiday greetings: what is sent must not depend on the day or hour.
                "NOTIFICATIONS_QUIET_START": "00:00",
                "NOTIFICATIONS_QUIET_END": "00:00",
                "NOTIFICATIONS_HOLIDAY_SELECTION": json.dumps({"CN": {}, "US": {}, "GB": {}}),
                "NOTIFICATIONS_EXTRA_HOLIDAYS": "[]",
                # Nothing listens there: a message must never reach a provider of another local run.
                "NOTIFICATIONS_SMS_URL": f"http://127.0.0.1:{closed_port}/sms",
                "NOTIFICATIONS_WEBHOOK_URL": "",
                "NOTIFICATIONS_CHANNEL_BACKOFF_S": "0.05",
            })
        return env

    # --- processes -------------------------------------------------------------------------------

    async def start(self, timeout: float) -> None:
        """The four services as processes on fresh groups and databases, and the clients that watch them."""
        closed_port = free_port()
        self.processes = {name: ServiceProcess(name, self.environment(name, closed_port), self.log_dir)
                          for name in SERVICES}
        self.mongo = AsyncMongoClient(self.mongodb_url, tz_aware=True)
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        self.reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False)
        await self.admin.start()
        await self.reader.start()
        await ensure_topics(ServiceSettings(service_name="e2e"))
        await self.known_partitions()
        # The fresh groups start at the end of the shared topics, not at earlier runs' history.
        await asyncio.gather(*(
            skip_backlog(ServiceSettings(service_name=service, kafka_group_id=self.group_prefix(service)), [topic])
            for service, topics in SUBSCRIPTIONS.items() for topic in topics))
        started = await asyncio.gather(*(asyncio.to_thread(p.start, timeout) for p in self.processes.values()),
                                       return_exceptions=True)
        failed = [error for error in started if isinstance(error, BaseException)]
        if failed:
            raise failed[0]
        for name, process in self.processes.items():
            self.http[name] = httpx.AsyncClient(base_url=process.url, headers={"X-API-Key": self.api_key},
                                                timeout=15.0)

    async def stop(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.processes.values()))
        for client in self.http.values():
            await client.aclose()
        if self.reader is not None:
            await self.reader.stop()
        if self.admin is not None:
            await self.admin.close()
        if self.mongo is not None:
            await self.mongo.close()

    # --- customers ---------------------------------------------------------------------------------

    def person(self, label: str, *, locale: str | None = None, country: str = "CN") -> Person:
        tag = f"{self.token}{len(self.people):02d}"
        person = Person(
            label=label, customer_id=f"E2E-{tag}-{label}", name=f"{label.title()} Testperson{tag}",
            phone=valid_mobile(), email=f"{label}.{tag}@example.com",
            address=f"{random.randrange(1, 999)} Testroad {tag}, Shanghai", locale=locale, country=country,
        )
        self.people.append(person)
        return person

    async def register(self, person: Person) -> dict[str, Any]:
        response = await self.http["customer"].post(
            "/customers", json={"customer_id": person.customer_id, **person.profile()})
        assert response.status_code == 201, response.text
        return response.json()

    async def register_upstream(self, person: Person) -> None:
        """Registration as an upstream system sends it, on crm.customer-intake.v1."""
        await produce(self.bootstrap, CRM_CUSTOMER_INTAKE, [(person.customer_id.encode(), envelope(
            "customer.registered", person.customer_id, person.profile()))])

    async def buy(self, person: Person, amount: str, *, order_id: str | None = None) -> str:
        order_id = order_id or f"O-{uuid.uuid4().hex[:12]}"
        await produce(self.bootstrap, ORDERS_PURCHASES,
                      [(person.customer_id.encode(), purchase(person.customer_id, order_id, amount))])
        return order_id

    async def complain(self, person: Person, complaint_id: str, **data: Any) -> None:
        fields = {"complaint_id": complaint_id, "channel": "phone", "category": "delivery", "severity": "normal",
                  "complexity": "standard", "subject": "Parcel late", **data}
        await produce(self.bootstrap, CRM_COMPLAINT_INTAKE,
                      [(person.customer_id.encode(), envelope("complaint.submitted", person.customer_id, fields))])

    async def classification(self, person: Person) -> dict[str, Any] | None:
        response = await self.http["tiering"].get(f"/customers/{person.customer_id}/classification")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return response.json()

    async def classified(self, person: Person, timeout: float = WAIT, **expected: str) -> dict[str, Any]:
        """The classification once it shows ``expected`` (dimension -> class)."""
        async def check() -> dict[str, Any] | None:
            found = await self.classification(person)
            return found if found and all(found.get(k) == v for k, v in expected.items()) else None
        return await eventually(check, timeout=timeout)

    async def complaint(self, complaint_id: str) -> dict[str, Any] | None:
        response = await self.http["complaints"].get(f"/complaints/{complaint_id}")
        return response.json() if response.status_code == 200 else None

    async def notifications(self, person: Person) -> list[dict[str, Any]]:
        response = await self.http["notifications"].get(f"/customers/{person.customer_id}/notifications")
        assert response.status_code == 200, response.text
        return response.json()["notifications"]

    def emails_to(self, person: Person) -> list[Any]:
        return self.smtp.to(person.email.lower())

    # --- the broker --------------------------------------------------------------------------------

    async def known_partitions(self) -> None:
        """Wait until the broker's metadata lists the partitions of every consumed topic (topics
        created a moment ago are not in it at once)."""
        assert self.reader is not None
        reader = self.reader
        topics = {t for subscribed in SUBSCRIPTIONS.values() for t in subscribed}

        async def listed() -> bool:
            await reader._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
            return all(reader.partitions_for_topic(t) for t in topics)
        await eventually(listed)

    async def end_offsets(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        assert self.reader is not None
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(self.reader.partitions_for_topic(t) or ())]
        return await self.reader.end_offsets(partitions)

    async def consumers_joined(self, timeout: float = 90.0) -> None:
        """Wait until every service holds partitions of each topic it consumes: on a busy broker a
        group's first join can take longer than a journey's wait for the message it brings."""
        pending: list[str] = []

        async def joined() -> bool:
            pending.clear()
            for service, subscribed in SUBSCRIPTIONS.items():
                held = (await self.http[service].get("/health")).json().get("partitions", {})
                pending.extend(f"{service} {topic}" for topic in subscribed if not held.get(topic))
            return not pending
        try:
            await eventually(joined, timeout=timeout, interval=0.5)
        except AssertionError:
            raise AssertionError(f"consumer groups not joined: {pending}") from None

    async def settle(self, rounds: int = 3, timeout: float = WAIT) -> None:
        """Wait until every service has handled what was on its topics, ``rounds`` times over, so
        that what the first round's messages caused downstream (tier change, message, timeline entry)
        is handled too."""
        assert self.admin is not None
        admin = self.admin
        topics = sorted({t for subscribed in SUBSCRIPTIONS.values() for t in subscribed})
        behind: list[str] = []
        for _ in range(rounds):
            ends = await self.end_offsets(topics)

            async def caught_up() -> bool:
                behind.clear()
                for service, subscribed in SUBSCRIPTIONS.items():
                    for topic in subscribed:
                        committed = await admin.list_consumer_group_offsets(self.group(service, topic))
                        for tp, end in ends.items():
                            done = committed.get(tp)
                            if tp.topic == topic and end > (done.offset if done else 0):
                                behind.append(f"{service} {tp.topic}[{tp.partition}]")
                return not behind
            try:
                await eventually(caught_up, timeout=timeout, interval=0.5)
            except AssertionError:
                raise AssertionError(f"services still behind: {behind}") from None

    async def read_topic(self, topic: str) -> list[Any]:
        """Every record of ``topic`` up to its current end, read from the start without a group, as
        a new downstream consumer would."""
        ends = {tp: end for tp, end in (await self.end_offsets([topic])).items() if end > 0}
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        records: list[Any] = []
        try:
            consumer.assign(list(ends))
            await consumer.seek_to_beginning(*ends)
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)])
        finally:
            await consumer.stop()
        return records

    # --- the stores --------------------------------------------------------------------------------

    async def raw_documents(self) -> list[tuple[str, str]]:
        """Every document of every collection of every service database, as ``(where, text)``."""
        assert self.mongo is not None
        found = []
        for service in SERVICES:
            db = self.mongo[self.database(service)]
            for collection in sorted(await db.list_collection_names()):
                async for doc in db[collection].find({}):
                    found.append((f"{service}.{collection}", str(doc)))
        return found

    # --- processes ---------------------------------------------------------------------------------

    async def check_subscriptions(self) -> None:
        """The topics each running service consumes are the ones whose backlog was skipped."""
        for service, process in self.processes.items():
            doc = (await self.http[service].get("/asyncapi.json")).json()
            received = {doc["channels"][unquote(op["channel"]["$ref"].rsplit("/", 1)[-1])]["address"]
                        for op in doc["operations"].values() if op["action"] == "receive"}
            assert received == set(SUBSCRIPTIONS[service]), (
                f"{process.name} consumes {sorted(received)}; update SUBSCRIPTIONS in {__name__}")

    def logs(self) -> dict[str, str]:
        return {name: process.log_text() for name, process in self.processes.items()}

    def log_digest(self, tail: int = 40) -> str:
        """The last lines of each service's log other than per-message ones, to read beside a failure."""
        parts = []
        for name, text in self.logs().items():
            lines = [line for line in text.splitlines() if '"Received"' not in line and '"Processed"' not in line]
            parts.append(f"--- {name} (last {tail} lines besides Received/Processed) ---\n" + "\n".join(lines[-tail:]))
        return "\n".join(parts)


Journey = Callable[[System], Awaitable[None]]


def journey(scenario: Journey) -> Callable[..., Awaitable[None]]:
    """Make ``scenario`` a test that waits for it; the ``journeys`` fixture starts all of a module's
    scenarios at once, since each spends seconds waiting on the services (tiers, SLA timers, e-mail),
    so a module takes about as long as its slowest journey rather than the sum."""

    async def test(journeys: dict[str, asyncio.Task[None]], system: System) -> None:
        try:
            await journeys[scenario.__name__]
        except BaseException:
            print(system.log_digest())  # pytest shows it with the failure
            raise

    test.__name__ = test.__qualname__ = scenario.__name__
    test.__doc__ = scenario.__doc__
    test.__module__ = scenario.__module__
    test.journey = scenario  # type: ignore[attr-defined]
    return test
