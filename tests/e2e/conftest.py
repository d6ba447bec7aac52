"""The four services started once per module as separate processes, and the module's journeys
(see ``system.journey``) started together as soon as the first test asks for them.

Each process logs JSON lines to ``<service>.log`` in an ``e2e-logs*`` directory under pytest's
base temporary directory, which pytest keeps for the last few runs.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from shared.kafka import ensure_topics
from shared.settings import ServiceSettings
from tests.doubles import smtp_server
from tests.helpers import api_key, skip_backlog
from tests.processes import ServiceProcess, free_port

from .system import SCOPES, SERVICES, SUBSCRIPTIONS, System

#: Short enough to breach while a test waits: a preferred customer's first response is due in
#: 5.4 s, everyone else's in an hour. Clock hours, so that the business calendar plays no part.
SLA_POLICIES: list[dict[str, Any]] = [
    {"name": "preferred", "tiers": ["vip", "high"], "targets": {"first_response": "0.0015h", "resolution": "1h"}},
    {"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}},
]

#: Four interpreters importing at once on a shared two-core machine can take a minute to be healthy.
START_TIMEOUT = 180.0


@pytest.fixture(scope="module")
async def system(infra: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[System]:
    key, entry = api_key("e2e", *SCOPES)
    with smtp_server() as (sink, smtp_port):
        system = System(
            token=uuid.uuid4().hex[:8], bootstrap=infra["KAFKA_BOOTSTRAP_SERVERS"], mongodb_url=infra["MONGODB_URL"],
            log_dir=tmp_path_factory.mktemp("e2e-logs"), work_dir=tmp_path_factory.mktemp("e2e-work"),
            smtp=sink, smtp_port=smtp_port, api_key=key,
            api_keys_setting=json.dumps([entry.model_dump(mode="json")]), sla_policies=SLA_POLICIES,
        )
        closed_port = free_port()
        system.processes = {name: ServiceProcess(name, system.environment(name, closed_port), system.log_dir)
                            for name in SERVICES}
        system.mongo = AsyncMongoClient(system.mongodb_url, tz_aware=True)
        system.admin = AIOKafkaAdminClient(bootstrap_servers=system.bootstrap)
        system.reader = AIOKafkaConsumer(bootstrap_servers=system.bootstrap, group_id=None, enable_auto_commit=False)
        try:
            await system.admin.start()
            await system.reader.start()
            await ensure_topics(ServiceSettings(service_name="e2e"))
            await system.known_partitions()
            # The fresh groups start at the end of the shared topics, not at earlier runs' history.
            await asyncio.gather(*(
                skip_backlog(ServiceSettings(service_name=service, kafka_group_id=system.group_prefix(service)),
                             [topic])
                for service, topics in SUBSCRIPTIONS.items() for topic in topics))
            started = await asyncio.gather(
                *(asyncio.to_thread(p.start, START_TIMEOUT) for p in system.processes.values()),
                return_exceptions=True)
            failed = [error for error in started if isinstance(error, BaseException)]
            if failed:
                raise failed[0]
            for name, process in system.processes.items():
                system.http[name] = httpx.AsyncClient(base_url=process.url, headers={"X-API-Key": key}, timeout=15.0)
            await system.check_subscriptions()
            await system.consumers_joined()
            yield system
        finally:
            await asyncio.gather(*(asyncio.to_thread(p.stop) for p in system.processes.values()))
            for client in system.http.values():
                await client.aclose()
            await system.reader.stop()
            await system.admin.close()
            await system.mongo.close()


@pytest.fixture(scope="module")
async def journeys(request: pytest.FixtureRequest, system: System) -> AsyncIterator[dict[str, asyncio.Task[None]]]:
    """Every journey of the module, started at once; tests that look at the whole run wait for all."""
    scenarios = [getattr(value, "journey") for value in vars(request.module).values() if hasattr(value, "journey")]
    tasks = {scenario.__name__: asyncio.create_task(scenario(system), name=scenario.__name__)
             for scenario in scenarios}
    yield tasks
    for task in tasks.values():
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
