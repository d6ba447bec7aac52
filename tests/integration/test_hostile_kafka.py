"""Hostile records on every topic each service reads, on the real broker and store.

Per service: the hostile corpus, each record between valid events of the same customer (so in the
same partition), is produced to every input topic before the service starts. Each hostile record
must land in ``<topic>.dlq`` once with its ``x-error`` code and its original bytes; no valid one
may; the service's groups must commit past the last record of every partition (nothing stalls);
what the valid events did is read back through the service; and the service is still healthy.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.contract import dlq
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
from services.complaints.accounts import Account, Change
from tests.helpers import api_key, eventually, skip_backlog
from tests.hostile import (
    CONTROL_NAME,
    DELETE,
    NUL_TEXT,
    TEMPLATE_NAMES,
    Hostile,
    amount_corpus,
    changed,
    dumps,
    envelope_corpus,
    event,
)
from tests.integration.service_apps import SERVICES, build, serving, settings_for

pytestmark = pytest.mark.integration

KEY, ENTRY = api_key("reader", "customers:read", "pii:read", "tiers:read", "complaints:read", "notifications:read")
#: A time whose UTC instant is past the year 9999: valid as written, impossible to store.
UNREPRESENTABLE = "9999-12-31T23:59:59-14:00"
#: The event type each input topic carries in the valid records, and a field holding a time.
VALID_TYPE = {
    ORDERS_PURCHASES: "order.purchase.completed", CRM_INTERACTIONS: "customer.interaction.recorded",
    CRM_CUSTOMER_INTAKE: "customer.updated", CRM_COMPLAINT_INTAKE: "complaint.submitted",
    CRM_CUSTOMERS: "customer.profile.changed", CRM_TIER_CHANGES: "customer.tier.changed",
    CRM_CUSTOMER_TIERS: "customer.classification", CRM_COMPLAINTS: "complaint.opened",
    CRM_NOTIFICATIONS: "notification.sent", CRM_ACCOUNT_MANAGERS: "customer.account_manager.changed",
    CRM_CARE_TASKS: "care.return_visit.due",
}
TIME_FIELD = {CRM_CUSTOMERS: "created_at", CRM_TIER_CHANGES: "effective_at", CRM_CUSTOMER_TIERS: "updated_at",
              CRM_COMPLAINTS: "resolution_due_at", CRM_NOTIFICATIONS: "scheduled_for",
              CRM_ACCOUNT_MANAGERS: "changed_at"}


def valid(topic: str, customer: str, i: int) -> dict[str, Any]:
    """The ``i``-th valid event of ``topic`` for ``customer``; names carry template syntax and
    control characters, which are data to keep as written."""
    at = datetime.now(UTC) - timedelta(minutes=10) + timedelta(seconds=i)
    name = (*TEMPLATE_NAMES, CONTROL_NAME)[i % 4]
    kind = VALID_TYPE[topic]
    if topic == CRM_CUSTOMER_INTAKE and i == 0:
        return event("customer.registered", customer, at=at, name=name)
    if topic in (CRM_CUSTOMER_INTAKE, CRM_CUSTOMERS):
        return event(kind, customer, at=at, name=name)
    if topic == CRM_CUSTOMER_TIERS:
        return event(kind, customer, at=at, updated_at=at.isoformat())
    if topic == CRM_CARE_TASKS:
        return event(kind, customer, at=at, visit_id=f"return_visit:2026-01-01:{customer}")
    if topic == CRM_INTERACTIONS:
        return event(kind, customer, at=at, summary=name)
    if topic == CRM_COMPLAINT_INTAKE:
        return event(kind, customer, at=at, subject=name, description=name)
    if topic == CRM_COMPLAINTS and i % 3 == 2:  # every consumer of the topic takes staff alerts too
        return event("complaint.staff_alert", customer, at=at)
    return event(kind, customer, at=at)


def hostile(service: str, topic: str, customer: str, unique: str) -> list[Hostile]:
    """The corpus for ``topic`` as ``service`` reads it: the same for every topic, plus the rules of
    its event types and of the service."""
    base = valid(topic, customer, 1)
    stranger = event("complaint.submitted" if topic == ORDERS_PURCHASES else "order.purchase.completed", customer)
    corpus = envelope_corpus(base, stranger)
    if topic == ORDERS_PURCHASES:
        corpus += amount_corpus(base)
        if service == "tiering":  # ISO 4217, but without a rate in the default policy
            corpus.append(Hostile("currency-without-rate", dumps(changed(base, data__currency="BRL")),
                                  "unknown_currency", key=customer.encode()))
    if topic in TIME_FIELD:
        corpus.append(Hostile("time-not-representable", dumps(changed(base, **{
            f"data__{TIME_FIELD[topic]}": UNREPRESENTABLE})), "invalid_data", key=customer.encode()))
    text_field = {CRM_CUSTOMER_INTAKE: "name", CRM_CUSTOMERS: "name", CRM_INTERACTIONS: "summary",
                  CRM_COMPLAINT_INTAKE: "subject"}.get(topic)
    if text_field:
        corpus.append(Hostile("text-with-nul", dumps(changed(base, **{f"data__{text_field}": NUL_TEXT})),
                              "invalid_data", key=customer.encode()))
    if topic == CRM_INTERACTIONS:
        corpus.append(Hostile("satisfaction-float", dumps(changed(base, data__satisfaction=4.5)), "invalid_data",
                              key=customer.encode()))
    if topic == CRM_COMPLAINTS:
        alert = valid(topic, customer, 2)
        corpus += [
            Hostile("staff-alert-without-alert", dumps(changed(alert, data__alert=DELETE)), "invalid_data",
                    "data.alert", key=customer.encode()),
            Hostile("staff-alert-reaching-nobody", dumps(changed(alert, data__alert__webhook=DELETE)), "invalid_data",
                    "data.alert", key=customer.encode()),
            Hostile("staff-alert-bad-email", dumps(changed(alert, data__alert__email="{{ 7*7 }}@")), "invalid_data",
                    "data.alert.email", key=customer.encode()),
            Hostile("staff-alert-webhook-not-http", dumps(changed(alert, data__alert__webhook="file:///etc/passwd")),
                    "invalid_data", "data.alert.webhook", key=customer.encode()),
            Hostile("staff-alert-unknown-rung", dumps(changed(alert, data__alert__rung="ceo")), "invalid_data",
                    "data.alert.rung", key=customer.encode()),
        ]
    if topic == CRM_CARE_TASKS:
        corpus.append(Hostile("visit-of-a-customer-without-a-manager",
                              dumps(changed(base, subject=f"C-unmanaged-{unique}")), "not_managed",
                              key=f"C-unmanaged-{unique}".encode()))
    if topic == CRM_ACCOUNT_MANAGERS:
        corpus.append(Hostile("manager-not-a-staff-id", dumps(changed(base, data__manager_id="{{ 7*7 }}")),
                              "invalid_data", "data.manager_id", key=customer.encode()))
    if topic == CRM_COMPLAINT_INTAKE:
        corpus.append(Hostile("description-too-long", dumps(changed(base, data__description="x" * 5001)),
                              "invalid_data", key=customer.encode()))
    if topic == CRM_CUSTOMER_INTAKE:
        stranger_id = f"C-unknown-{unique}"
        corpus.append(Hostile("update-of-an-unknown-customer", dumps(changed(base, subject=stranger_id)),
                              "unknown_customer", key=stranger_id.encode()))
    return corpus


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None, Any]],
                  ) -> list[tuple[int, int]]:
    """Send ``(key, value, headers)`` in order; the partition and offset of each."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                max_request_size=1024 * 1024)
    await producer.start()
    try:
        placed = []
        for key, value, headers in records:
            meta = await producer.send_and_wait(topic, value, key=key, headers=list(headers) or None)
            placed.append((meta.partition, meta.offset))
        return placed
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
        partitions = [TopicPartition(topic, p) for p in consumer._client.cluster.partitions_for_topic(topic) or ()]
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def read_from(bootstrap: str, start: dict[TopicPartition, int], until: Any, timeout: float = 60) -> list[Any]:
    """Records of the partitions of ``start`` from those offsets, until ``until(records)`` holds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[Any] = []
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)

        async def enough() -> bool:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                found.extend(records)
            return until(found)

        try:
            await eventually(enough, timeout=timeout, interval=0)
        except AssertionError:
            pass  # what is missing is reported by the caller, record by record
    finally:
        await consumer.stop()
    return found


async def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


@pytest.mark.parametrize("service", SERVICES)
async def test_every_hostile_record_on_every_input_topic_goes_to_its_dlq_and_the_valid_ones_around_it_are_processed(
        infra: dict[str, str], unique: str, service: str) -> None:
    bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]
    customer = f"C-hostile-{unique}"
    settings = settings_for(service, unique, (ENTRY,), kafka_auto_offset_reset="earliest")
    app = build(service, settings)
    topics = sorted({t for s in app.state.runtime.broker.subscribers for t in s.topic_names})
    await skip_backlog(settings, topics)  # the groups start at the end: only what follows is theirs

    if service == "complaints":  # the customer's return visits have an account manager to go to
        change = Change(revision=1, at=datetime.now(UTC), actor="rule", reason="vip", manager="am-xu")
        account = Account(customer_id=customer, manager="am-xu", manager_name="Xu Bo", revision=1, history=[change])
        assert await app.state.accounts.repo.write_change(account, [], expected_revision=0)

    expected: dict[tuple[str, int, int], Hostile] = {}  # (topic, partition, offset) -> hostile record
    valid_at: set[tuple[str, int, int]] = set()
    last: dict[tuple[str, int], int] = {}
    dlq_start: dict[TopicPartition, int] = {}
    for topic in topics:
        corpus = hostile(service, topic, customer, unique)
        records: list[tuple[bytes | None, bytes | None, Any]] = []
        kinds: list[Hostile | None] = []
        for i, bad in enumerate(corpus):
            if i % 2 == 0:  # a valid event of the same customer before every second hostile record
                records.append((customer.encode(), dumps(valid(topic, customer, i // 2)), ()))
                kinds.append(None)
            records.append((bad.key, bad.value, bad.headers))
            kinds.append(bad)
        records.append((customer.encode(), dumps(valid(topic, customer, len(corpus))), ()))
        kinds.append(None)
        dlq_start.update(await end_offsets(bootstrap, dlq(topic)))
        for (partition, offset), kind in zip(await produce(bootstrap, topic, records), kinds, strict=True):
            if kind is None:
                valid_at.add((topic, partition, offset))
            else:
                expected[topic, partition, offset] = kind
            last[topic, partition] = max(last.get((topic, partition), -1), offset)

    def original(record: Any) -> tuple[str, int, int]:
        headers = {k: v.decode() for k, v in record.headers}
        return headers["x-original-topic"], int(headers["x-original-partition"]), int(headers["x-original-offset"])

    async def behind() -> list[str]:
        positions: dict[tuple[str, int], int] = {}
        for topic in topics:
            positions.update(await committed(bootstrap, settings.group_for(topic)))
        return [f"{t}[{p}] committed {positions.get((t, p))}, last record {o}" for (t, p), o in last.items()
                if positions.get((t, p), -1) <= o]

    async def caught_up() -> bool:
        return not await behind()

    async with serving(app) as client:
        try:
            await eventually(caught_up, timeout=60, interval=0.5)
        except AssertionError:
            pass  # reported below with what is behind
        stalled = await behind()
        dead = await read_from(bootstrap, dlq_start, lambda rs: len([r for r in rs if original(r) in expected])
                               >= len(expected), timeout=30)
        health = await client.get("/health")
        stopped = [s.topic_names for s in app.state.runtime.broker.subscribers if not s.running]
        effects = await _effects(service, app, client, customer)

    assert not stalled, f"{service} stalled: {stalled}"
    by_origin: dict[tuple[str, int, int], list[Any]] = {}
    for record in dead:
        by_origin.setdefault(original(record), []).append(record)
    wrong = []
    for where, bad in expected.items():
        found = by_origin.get(where, [])
        codes = [dict(r.headers)["x-error"].decode() for r in found]
        if codes != [bad.code]:
            wrong.append(f"{where[0]} {bad.name}: dead-lettered as {codes}, expected [{bad.code!r}]")
        elif found[0].value != (bad.value or b"") or not dict(found[0].headers).get("x-error-detail"):
            wrong.append(f"{where[0]} {bad.name}: the DLQ record lost the original bytes or the detail")
    wrong += [f"a valid event at {where} was dead-lettered: {dict(by_origin[where][0].headers)}"
              for where in valid_at if where in by_origin]
    assert not wrong, "\n".join(wrong)
    assert health.status_code == 200, health.text
    assert not stopped, f"subscribers stopped: {stopped}"
    missing = [what for what, ok in effects.items() if not ok]
    assert not missing, f"valid events without their effect: {missing}"


async def _effects(service: str, app: Any, client: Any, customer: str) -> dict[str, bool]:
    """What the valid events must have done, by topic, read back through the service."""
    headers = {"X-API-Key": KEY}
    if service == "customer":
        view = (await client.get(f"/customers/{customer}", headers=headers)).json()
        timeline = (await client.get(f"/customers/{customer}/timeline", params={"limit": 1000},
                                     headers=headers)).json()["items"]
        kinds = {item["kind"] for item in timeline}
        return {CRM_CUSTOMER_INTAKE: view.get("name") in (*TEMPLATE_NAMES, CONTROL_NAME.strip()),
                ORDERS_PURCHASES: "purchase" in kinds, CRM_INTERACTIONS: "interaction" in kinds,
                CRM_CUSTOMER_TIERS: bool(view.get("classification")), CRM_COMPLAINTS: "complaint" in kinds,
                CRM_NOTIFICATIONS: "notification" in kinds,
                CRM_ACCOUNT_MANAGERS: (view.get("account_manager") or {}).get("id") == "am-xu"}
    if service == "tiering":
        found = await client.get(f"/customers/{customer}/classification", headers=headers)
        orders = found.json().get("metrics", {}).get("orders_12m") if found.is_success else None
        return {ORDERS_PURCHASES: bool(orders)}
    if service == "complaints":
        found = (await client.get("/complaints", params={"customer": customer}, headers=headers)).json()
        tier = await app.state.repo.tier(customer)
        task = await app.state.accounts.repo.load_task(f"return_visit:2026-01-01:{customer}")
        return {CRM_COMPLAINT_INTAKE: found["count"] > 0, CRM_CUSTOMER_TIERS: tier is not None,
                CRM_CARE_TASKS: task is not None and task[0].assignee == "am-xu"}
    profile = await app.state.repo.profile(customer)
    history = (await client.get(f"/customers/{customer}/notifications", headers=headers)).json()["notifications"]
    # The valid staff alerts name only a webhook outside the allowed prefixes: recorded as failed, unsent.
    alert = await app.state.repo.staff_alerts.find_one({"customer_id": customer})
    return {CRM_CUSTOMERS: profile is not None and profile.name in (*TEMPLATE_NAMES, CONTROL_NAME.strip()),
            CRM_ACCOUNT_MANAGERS: profile is not None and profile.account_manager == "am-xu",
            CRM_COMPLAINTS: any(h["trigger"].startswith("complaint") for h in history),
            "complaint.staff_alert": alert is not None and alert["reason"] == "webhook_not_allowed"}
