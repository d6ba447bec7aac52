"""A consumer process for the crash test: records each purchase it sees, then hangs or finishes.

``hang``: after recording, block forever, so the offset is never committed and the test can
``kill -9`` it. ``finish``: record and return normally, so the offset is committed.
"""

from __future__ import annotations

import asyncio
import os
import sys

from faststream.kafka import KafkaRouter

from shared.contract import PurchaseCompleted, PurchaseRefunded
from shared.contract.topics import ORDERS_PURCHASES
from shared.kafka import subscriber_options
from shared.service import Runtime
from shared.settings import ServiceSettings


async def main(mode: str) -> None:
    unique = os.environ["RECORDER_UNIQUE"]
    settings = ServiceSettings(service_name=f"killable-{unique}", mongodb_database=f"test_recorder_{unique}")
    runtime = Runtime.create(settings)
    router = KafkaRouter()
    seen = runtime.store["seen"]

    @router.subscriber(ORDERS_PURCHASES, **subscriber_options(settings, ORDERS_PURCHASES))
    async def record(event: PurchaseCompleted | PurchaseRefunded) -> None:
        if not event.subject.endswith(unique):
            return
        await seen.insert_one({"order_id": event.data.order_id, "mode": mode})
        if mode == "hang":
            await asyncio.Event().wait()

    runtime.include(router)
    async with runtime.running():
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
