"""A service over SASL_SSL with SCRAM-SHA-512, configured only through its environment.

The broker is a Kafka of this module's own, started with a SASL_SSL listener (a certificate from a
local CA, a SCRAM user made when its storage is formatted) and stopped at the end; the store is the
session's.
"""

from __future__ import annotations

import json
import shutil
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from shared.contract.topics import CRM_CUSTOMER_TIERS, CRM_TIER_CHANGES, ORDERS_PURCHASES
from shared.kafka import admin_kwargs
from shared.settings import ServiceSettings
from tests.helpers import purchase
from tests.processes import ServiceProcess, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sasl_kafka(infra: dict[str, str]) -> Iterator[Any]:
    # Imported after the session's infrastructure fixture has chosen the run directory.
    from deploy.local import infra as local

    kafka = local.Kafka(port=free_port(), controller_port=free_port(), sasl_port=free_port(),
                        run_dir=local.RUN_DIR / "sasl")
    kafka.down()  # left running by an interrupted run
    shutil.rmtree(kafka.home, ignore_errors=True)
    kafka.up()
    try:
        yield kafka
    finally:
        kafka.down()


def client_settings(kafka: Any, **overrides: Any) -> ServiceSettings:
    env = kafka.client_settings()
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": env["KAFKA_BOOTSTRAP_SERVERS"],
        "kafka_security_protocol": env["KAFKA_SECURITY_PROTOCOL"],
        "kafka_sasl_mechanism": env["KAFKA_SASL_MECHANISM"],
        "kafka_sasl_username": env["KAFKA_SASL_USERNAME"],
        "kafka_sasl_password": env["KAFKA_SASL_PASSWORD"],
        "kafka_ssl_cafile": Path(env["KAFKA_SSL_CAFILE"]),
    }
    return ServiceSettings(**{**values, **overrides})


async def read_until(settings: ServiceSettings, topic: str, wanted: Any, timeout: float = 60.0) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, **admin_kwargs(settings), group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not wanted(found):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(json.loads(r.value) for r in records if r.value)
    finally:
        await consumer.stop()
    assert wanted(found), f"not seen on {topic} within {timeout:.0f}s: {found}"
    return found


async def test_a_purchase_sent_over_sasl_ssl_is_classified_by_a_service_given_only_environment_settings(
        sasl_kafka: Any, infra: dict[str, str], unique: str, tmp_path: Path) -> None:
    env = {**sasl_kafka.client_settings(), "MONGODB_URL": infra["MONGODB_URL"],
           "TIERING_MONGODB_DATABASE": f"test_sasl_tiering_{unique}", "KAFKA_TOPIC_PARTITIONS": "2",
           "TIERING_REFRESH_INTERVAL_S": "0"}
    service = ServiceProcess("tiering", env, tmp_path).start(timeout=120)  # creates the topics over SASL_SSL
    try:
        settings = client_settings(sasl_kafka)
        customer = f"C-{unique}"
        event = purchase(customer, f"O-{unique}", "6000.00", time_=datetime.now(UTC) - timedelta(days=1))
        producer = AIOKafkaProducer(**admin_kwargs(settings), acks="all", enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(ORDERS_PURCHASES, json.dumps(event).encode(), key=customer.encode())
        finally:
            await producer.stop()

        def changes(found: list[Any]) -> set[str]:
            return {e["data"]["dimension"] for e in found if e["subject"] == customer}

        seen = await read_until(settings, CRM_TIER_CHANGES, lambda found: "value_tier" in changes(found))
        first = next(e for e in seen if e["subject"] == customer and e["data"]["dimension"] == "value_tier")
        assert first["data"]["direction"] == "initial" and first["data"]["metrics"]["spend_12m"] == "6000.00"
        snapshots = await read_until(settings, CRM_CUSTOMER_TIERS,
                                     lambda found: any(e["subject"] == customer for e in found))
        assert next(e for e in snapshots if e["subject"] == customer)["data"]["value_tier"] == first["data"]["current"]
    finally:
        service.stop()


@pytest.mark.parametrize(("change", "reason"), [
    ({"KAFKA_SASL_PASSWORD": "not-the-password"}, "invalid credentials"),
    ({"KAFKA_SASL_PASSWORD": "not-the-password", "KAFKA_CREATE_TOPICS": "false"}, "invalid credentials"),
    ({"KAFKA_SSL_CAFILE": None}, "CERTIFICATE_VERIFY_FAILED"),
], ids=["wrong password", "wrong password without creating topics", "broker certificate not trusted"])
async def test_a_service_the_broker_refuses_stops_at_start_and_says_why(
        sasl_kafka: Any, infra: dict[str, str], unique: str, tmp_path: Path, change: dict[str, str | None],
        reason: str) -> None:
    env = {**sasl_kafka.client_settings(), "MONGODB_URL": infra["MONGODB_URL"],
           "TIERING_MONGODB_DATABASE": f"test_sasl_tiering_{unique}", **change}
    service = ServiceProcess("tiering", {k: v for k, v in env.items() if v is not None}, tmp_path)
    with pytest.raises(RuntimeError, match="exited with"):  # not "not healthy after": it did not hang
        service.start(timeout=90)
    assert reason in service.log_text()


async def test_a_client_with_a_wrong_password_is_refused_within_seconds(sasl_kafka: Any) -> None:
    admin = AIOKafkaAdminClient(**admin_kwargs(client_settings(sasl_kafka, kafka_sasl_password="wrong")))
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError):
        await admin.start()
    await admin.close()
    assert time.monotonic() - started < 20


async def test_a_client_that_does_not_trust_the_local_ca_is_refused(sasl_kafka: Any) -> None:
    kwargs = admin_kwargs(client_settings(sasl_kafka, kafka_ssl_cafile=None))
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)  # the system's CAs only
    admin = AIOKafkaAdminClient(**kwargs)
    with pytest.raises(KafkaConnectionError):
        await admin.start()
    await admin.close()
