"""Topics, health, tombstones and trace propagation on the real broker and store."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from faststream.kafka import KafkaRouter

from shared.contract import CATALOGUE, TOPICS, PurchaseCompleted, PurchaseRefunded
from shared.contract.events import CustomerErased, CustomerProfileChanged
from shared.contract.topics import CRM_CUSTOMERS, ORDERS_PURCHASES
from shared.kafka import ensure_topics, subscriber_options
from shared import watermark
from shared.service import Runtime
from shared.settings import ServiceSettings
from tests.helpers import consume_all, envelope, eventually, produce, purchase, running, skip_backlog

pytestmark = pytest.mark.integration
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_ensure_topics_creates_every_topic_with_its_contract_configuration_and_is_idempotent(
    infra: dict[str, str],
) -> None:
    settings = ServiceSettings(service_name="topics-test")
    await ensure_topics(settings)
    assert await ensure_topics(settings) == []  # a second run finds nothing missing
    admin = AIOKafkaAdminClient(bootstrap_servers=infra["KAFKA_BOOTSTRAP_SERVERS"])
    await admin.start()
    try:
        async def listed() -> bool:  # the broker's topic list lags behind the controller for a moment
            return set(TOPICS) <= set(await admin.list_topics())

        await eventually(listed, timeout=15)
        names = [spec.name for spec in CATALOGUE]
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        found: dict[str, dict[str, str]] = {}
        for response in responses:
            for _, _, _, topic, entries in response.resources:
                found[topic] = {entry[0]: entry[1] for entry in entries}
        for spec in CATALOGUE:
            for key, value in spec.config.items():
                assert found[spec.name][key] == value, (spec.name, key)
    finally:
        await admin.close()


async def test_health_is_503_until_broker_and_store_answer_then_200(infra: dict[str, str], unique: str) -> None:
    down = Runtime.create(ServiceSettings(service_name=f"h-{unique}", mongodb_url="mongodb://127.0.0.1:1/",
                                          mongodb_timeout_ms=300))
    app = down.http_app(title="t", description="t")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "broker": False, "store": False, "partitions": {}}

    up = Runtime.create(ServiceSettings(service_name=f"h-{unique}", mongodb_database=f"test_health_{unique}"))
    async with running(up.http_app(title="t", description="t")) as client:
        response = await client.get("/health")
        metrics = await client.get("/metrics")
        asyncapi = await client.get("/asyncapi.json")
    assert response.status_code == 200 and response.json()["status"] == "ok"
    assert "carecrm_dead_letters" in metrics.text
    assert asyncapi.json()["asyncapi"].startswith("3.")


async def test_health_reports_the_partitions_of_each_consumed_topic_once_the_group_has_joined(
    infra: dict[str, str], unique: str,
) -> None:
    settings = ServiceSettings(service_name=f"assign-{unique}", mongodb_database=f"test_assign_{unique}")
    runtime = Runtime.create(settings)
    router = KafkaRouter()

    @router.subscriber(CRM_CUSTOMERS, **subscriber_options(settings, CRM_CUSTOMERS))
    async def on_customer(event: CustomerProfileChanged | CustomerErased) -> None:
        del event

    runtime.include(router)
    async with running(runtime.http_app(title="t", description="t")) as client:
        async def all_held() -> bool:
            return (await client.get("/health")).json()["partitions"] == {CRM_CUSTOMERS: settings.kafka_topic_partitions}
        await eventually(all_held, timeout=60)
    assert runtime.assigned_partitions() == {CRM_CUSTOMERS: 0}  # stopped: nothing held


async def test_a_tombstone_on_a_compacted_topic_is_skipped_without_a_dead_letter(
    infra: dict[str, str], unique: str
) -> None:
    settings = ServiceSettings(service_name=f"tomb-{unique}", mongodb_database=f"test_tomb_{unique}")
    runtime = Runtime.create(settings)
    router = KafkaRouter()
    seen: list[str] = []

    @router.subscriber(CRM_CUSTOMERS, **subscriber_options(settings, CRM_CUSTOMERS))
    async def on_customer(event: CustomerProfileChanged | CustomerErased) -> None:
        if event.subject.endswith(unique):
            seen.append(event.type)

    runtime.include(router)
    customer = f"C-{unique}"
    # From the end of the shared topic: what earlier tests left on it, bad records included, is not ours.
    await skip_backlog(settings, [CRM_CUSTOMERS])
    async with runtime.running():
        erased = envelope("customer.erased", customer, {"erased_at": "2026-11-23T10:00:00+00:00"})
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_CUSTOMERS, [(customer.encode(), erased)])
        await runtime.publisher.tombstone(CRM_CUSTOMERS, customer)
        after = envelope("customer.profile.changed", customer, {"status": "active"})
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_CUSTOMERS, [(customer.encode(), after)])
        await eventually(lambda: _async(len(seen) == 2))
    assert seen == ["customer.erased", "customer.profile.changed"]
    assert runtime.dead_letters.dead_letters.labels(CRM_CUSTOMERS, "invalid_envelope")._value.get() == 0
    records = await consume_all(infra["KAFKA_BOOTSTRAP_SERVERS"], CRM_CUSTOMERS,
                                until=lambda rs: sum(r.key == customer.encode() for r in rs) >= 3)
    assert [r.value is None for r in records if r.key == customer.encode()] == [False, True, False]


async def test_an_event_caused_by_a_traced_event_carries_its_traceparent(infra: dict[str, str], unique: str) -> None:
    settings = ServiceSettings(service_name=f"trace-{unique}", mongodb_database=f"test_trace_{unique}")
    runtime = Runtime.create(settings)
    router = KafkaRouter()
    out_topic = "crm.tier-changes.v1"

    @router.subscriber(ORDERS_PURCHASES, **subscriber_options(settings, ORDERS_PURCHASES))
    async def relay(event: PurchaseCompleted | PurchaseRefunded) -> None:
        if not event.subject.endswith(unique):
            return
        tier = envelope("customer.tier.changed", event.subject, {
            "dimension": "value_tier", "previous": None, "current": "low", "direction": "initial",
            "reason": "first purchase", "policy_version": "t", "effective_at": event.time.isoformat(),
            "metrics": {"currency": "CNY", "spend_12m": "1.00", "orders_12m": 1}})
        from shared.contract import parse_event

        await runtime.publisher.publish([parse_event(json.dumps(tier).encode())])

    runtime.include(router)
    customer = f"C-{unique}"
    async with runtime.running():
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], ORDERS_PURCHASES,
                      [(customer.encode(), purchase(customer, f"O-{unique}"))],
                      headers=[("traceparent", TRACE.encode())])
        records = await consume_all(infra["KAFKA_BOOTSTRAP_SERVERS"], out_topic,
                                    until=lambda rs: any(r.key == customer.encode() for r in rs))
    mine = [r for r in records if r.key == customer.encode()]
    assert dict(mine[0].headers)["traceparent"] == TRACE.encode()
    assert dict(mine[0].headers)["content-type"] == b"application/cloudevents+json"


async def _async(value: object) -> object:
    return value


async def test_an_event_time_clock_resumes_after_a_restart_on_the_data_s_time_not_wall_time(
    infra: dict[str, str], unique: str,
) -> None:
    settings = ServiceSettings(service_name=f"clock-{unique}", mongodb_database=f"test_clock_{unique}", clock="event")
    replayed = datetime(2011, 3, 4, 10, 30, tzinfo=UTC)
    first = Runtime.create(settings)
    async with running(first.http_app(title="t", description="t")):
        assert first.clock.now().year >= 2026  # nothing seen and nothing stored: wall time
        first.clock.observe(replayed)
    # Saved at the stop; an older time saved later never takes it back.
    second = Runtime.create(settings)
    async with running(second.http_app(title="t", description="t")):
        assert second.clock.now() == replayed
        second.clock.observe(replayed - timedelta(days=30))
        await watermark.save(second.store, second.clock)  # type: ignore[arg-type]
    third = Runtime.create(settings)
    async with running(third.http_app(title="t", description="t")):
        assert third.clock.now() == replayed
        # Kept while running, not only at a clean stop (a killed process loses a few seconds at most).
        later = replayed + timedelta(hours=5)
        keeper = asyncio.create_task(watermark.keep(third.store, third.clock, every_s=0.05))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        third.clock.observe(later)
        try:
            async def kept() -> bool:
                doc = await third.store[watermark.COLLECTION].find_one({"_id": watermark.KEY})
                return doc is not None and doc["at"] == later
            await eventually(kept, timeout=10)
        finally:
            keeper.cancel()
    wall = Runtime.create(ServiceSettings(service_name=f"clock-{unique}", mongodb_database=f"test_clock_{unique}"))
    async with running(wall.http_app(title="t", description="t")):
        assert wall.clock.now().year >= 2026  # a wall clock ignores what an event-time clock stored
