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

import pytest

from tests.doubles import smtp_server
from tests.helpers import api_key

from .system import SCOPES, System

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
        try:
            await system.start(START_TIMEOUT)
            await system.check_subscriptions()
            await system.consumers_joined()
            yield system
        finally:
            await system.stop()


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
