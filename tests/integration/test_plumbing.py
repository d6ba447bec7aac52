"""The shared Kafka and MongoDB plumbing on the real broker and store."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from faststream.kafka import KafkaRouter
from pymongo import AsyncMongoClient

from shared.contract import PurchaseCompleted, PurchaseRefunded, dlq
from shared.contract.topics import ORDERS_PURCHASES
from shared.kafka import subscriber_options
from shared.mongo import insert_once
from shared.service import Runtime
from shared.settings import ServiceSettings
from tests.helpers import consume_all, envelope, eventually, produce, purchase

pytestmark = pytest.mark.integration
RECORDER = Path(__file__).with_name("recorder.py")


def recorder_runtime(unique: str) -> Runtime:
    settings = ServiceSettings(service_name=f"recorder-{unique}", mongodb_database=f"test_plumbing_{unique}")
    runtime = Runtime.create(settings)
    router = KafkaRouter()
    purchases = runtime.store["purchases"]

    @router.subscriber(ORDERS_PURCHASES, **subscriber_options(settings, ORDERS_PURCHASES), title="recorder")
    async def record(event: PurchaseCompleted | PurchaseRefunded) -> None:
        if isinstance(event, PurchaseCompleted) and event.subject.endswith(unique):
            await insert_once(purchases, {"_id": event.data.order_id, "customer_id": event.subject,
                                          "amount": str(event.data.total_amount)})

    runtime.include(router)
    return runtime


async def test_a_purchase_produced_twice_is_stored_once(infra: dict[str, str], unique: str) -> None:
    runtime = recorder_runtime(unique)
    customer = f"C-{unique}"
    first = purchase(customer, f"O-{unique}", "199.90")
    again = {**first, "id": "another-delivery-of-the-same-order"}
    async with runtime.running():
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], ORDERS_PURCHASES,
                      [(customer.encode(), first), (customer.encode(), first), (customer.encode(), again)])
        marker = purchase(customer, f"O-{unique}-last")
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], ORDERS_PURCHASES, [(customer.encode(), marker)])
        await eventually(lambda: runtime.store["purchases"].find_one({"_id": f"O-{unique}-last"}))
        stored = await runtime.store["purchases"].find({"customer_id": customer}).to_list(None)
    assert sorted(d["_id"] for d in stored) == [f"O-{unique}", f"O-{unique}-last"]
    assert stored[0]["amount"] == "199.90"


@pytest.mark.parametrize(
    ("bad_value", "expected_error"),
    [
        (b"\x00garbage{", "invalid_json"),
        ({"type": "order.purchase.teleported"}, "unknown_type"),
        ({"amount_as_float": True}, "invalid_data"),
        ({"naive_time": True}, "invalid_envelope"),
    ],
    ids=["garbage-bytes", "unknown-type", "float-amount", "naive-time"],
)
async def test_a_bad_message_goes_to_the_dlq_and_the_valid_one_behind_it_is_processed(
    infra: dict[str, str], unique: str, bad_value: object, expected_error: str
) -> None:
    runtime = recorder_runtime(unique)
    customer = f"C-{unique}"
    if isinstance(bad_value, dict):
        event = purchase(customer, f"O-{unique}-bad")
        if bad_value.get("type"):
            event["type"] = bad_value["type"]
        if bad_value.get("amount_as_float"):
            event["data"]["total_amount"] = 199.9
        if bad_value.get("naive_time"):
            event["time"] = "2026-11-23T10:15:00"
        bad_value = event
    good = purchase(customer, f"O-{unique}-good")
    async with runtime.running():
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], ORDERS_PURCHASES,
                      [(customer.encode(), bad_value), (customer.encode(), good)])  # type: ignore[list-item]
        await eventually(lambda: runtime.store["purchases"].find_one({"_id": f"O-{unique}-good"}))
        assert await runtime.store["purchases"].count_documents({"customer_id": customer}) == 1

    def ours(records: list) -> list:
        return [r for r in records if r.key == customer.encode()]

    dead = ours(await consume_all(infra["KAFKA_BOOTSTRAP_SERVERS"], dlq(ORDERS_PURCHASES),
                                  until=lambda rs: bool(ours(rs))))
    assert len(dead) >= 1
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert headers["x-error"] == expected_error
    assert headers["x-original-topic"] == ORDERS_PURCHASES
    assert headers["x-original-partition"].isdigit() and headers["x-original-offset"].isdigit()
    assert headers["x-error-detail"]
    original = bad_value if isinstance(bad_value, bytes) else None
    if original is not None:
        assert dead[0].value == original


async def test_a_consumer_killed_before_commit_reads_its_message_again_after_restart(
    infra: dict[str, str], unique: str
) -> None:
    env = {**os.environ, "RECORDER_UNIQUE": unique}
    customer = f"C-{unique}"
    client: AsyncMongoClient = AsyncMongoClient(infra["MONGODB_URL"])
    seen = client[f"test_recorder_{unique}"]["seen"]
    first = subprocess.Popen([sys.executable, str(RECORDER), "hang"], env=env)
    try:
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], ORDERS_PURCHASES,
                      [(customer.encode(), purchase(customer, f"O-{unique}"))])
        # The handler records that it saw the message, then hangs before the offset is committed.
        await eventually(lambda: seen.count_documents({"order_id": f"O-{unique}"}), timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = subprocess.Popen([sys.executable, str(RECORDER), "finish"], env=env)
        try:
            await eventually(lambda: _count_at_least(seen, f"O-{unique}", 2), timeout=60)
        finally:
            second.terminate()
            second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()
        await client.close()


async def _count_at_least(collection, order_id: str, n: int) -> bool:  # noqa: ANN001
    return await collection.count_documents({"order_id": order_id}) >= n


async def test_binary_mode_events_are_accepted(infra: dict[str, str], unique: str) -> None:
    runtime = recorder_runtime(unique)
    customer = f"C-{unique}"
    event = purchase(customer, f"O-{unique}-binary")
    headers = [(f"ce_{k}", str(v).encode()) for k, v in event.items() if k != "data"]
    headers.append(("content-type", b"application/json"))
    import json

    async with runtime.running():
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], ORDERS_PURCHASES,
                      [(customer.encode(), json.dumps(event["data"]).encode())], headers=headers)
        stored = await eventually(lambda: runtime.store["purchases"].find_one({"_id": f"O-{unique}-binary"}))
    assert stored["amount"] == "100.00"


async def test_the_dlq_does_not_stop_a_partition_under_a_burst_of_garbage(infra: dict[str, str], unique: str) -> None:
    runtime = recorder_runtime(unique)
    customer = f"C-{unique}"
    messages: list = []
    for i in range(30):
        messages.append((customer.encode(), b"not json %d" % i))
        messages.append((customer.encode(), envelope("order.purchase.completed", customer,
                                                     {"order_id": f"O-{unique}-{i}", "total_amount": "-1",
                                                      "currency": "CNY"})))
        messages.append((customer.encode(), purchase(customer, f"O-{unique}-ok-{i}")))
    async with runtime.running():
        await produce(infra["KAFKA_BOOTSTRAP_SERVERS"], ORDERS_PURCHASES, messages)
        await eventually(lambda: _count_prefix(runtime, customer, 30), timeout=60)
        await asyncio.sleep(0.5)
        assert await runtime.store["purchases"].count_documents({"customer_id": customer}) == 30


async def _count_prefix(runtime: Runtime, customer: str, n: int) -> bool:
    return await runtime.store["purchases"].count_documents({"customer_id": customer}) >= n
