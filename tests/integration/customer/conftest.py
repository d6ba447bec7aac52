"""Fixtures of the customer service's integration tests: settings, API keys, a ready consumer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from services.customer.settings import CustomerSettings
from shared.settings import ApiKey
from tests.helpers import api_key, eventually

SCOPES = ("customers:read", "customers:write", "pii:read", "customers:erase")


@pytest.fixture
def keys() -> Iterator[dict[str, Any]]:
    """Plaintext keys by role, and ``entries`` for the settings."""
    made = {
        "all": api_key("all", *SCOPES),
        "reader": api_key("reader", "customers:read"),
        "writer": api_key("writer", "customers:read", "customers:write"),
        "other": api_key("other", "tiers:read"),
    }
    yield {**{role: key for role, (key, _) in made.items()}, "entries": tuple(e for _, e in made.values())}


def headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def customer_settings(unique: str, entries: tuple[ApiKey, ...] = (), **overrides: Any) -> CustomerSettings:
    # Starting at the end of the shared topics: other tests' customers are not ours to process.
    return CustomerSettings(mongodb_database=f"test_customer_{unique}", kafka_group_id=f"test-customer-{unique}",
                            kafka_auto_offset_reset="latest", api_keys=entries, **overrides)


async def consuming(app: FastAPI) -> None:
    """Wait until every subscriber owns its partitions and knows where it reads from.

    With ``latest``, anything produced after this is consumed; anything before may not be.
    """
    subscribers = app.state.runtime.broker.subscribers

    async def assigned() -> bool:
        return all(s.consumer is not None and s.consumer.assignment() for s in subscribers)

    await eventually(assigned, timeout=60)
    for subscriber in subscribers:
        for partition in subscriber.consumer.assignment():
            await subscriber.consumer.position(partition)
