"""The four services built as in production, for tests that go over all of them: settings with a
database and consumer groups of their own, the committed OpenAPI documents, and every scope."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from services.complaints.app import build_app as complaints_app
from services.complaints.settings import ComplaintsSettings
from services.customer.app import build_app as customer_app
from services.customer.settings import CustomerSettings
from services.notifications.app import build_app as notifications_app
from services.notifications.settings import NotificationsSettings
from services.tiering.app import build_app as tiering_app
from services.tiering.settings import TieringSettings
from shared.settings import ApiKey, ServiceSettings
from tests.helpers import running

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi"
SERVICES = ("customer", "tiering", "complaints", "notifications")
BUILD: dict[str, tuple[type[ServiceSettings], Callable[[Any], FastAPI]]] = {
    "customer": (CustomerSettings, customer_app),
    "tiering": (TieringSettings, tiering_app),
    "complaints": (ComplaintsSettings, complaints_app),
    "notifications": (NotificationsSettings, notifications_app),
}
ALL_SCOPES = frozenset({
    "customers:read", "customers:write", "customers:erase", "pii:read",
    "tiers:read", "tiers:write", "policy:write",
    "complaints:read", "complaints:write",
    "notifications:read", "notifications:write",
})
METHODS = ("get", "put", "post", "delete", "patch")


def settings_for(service: str, unique: str, keys: tuple[ApiKey, ...] = (), **overrides: Any) -> ServiceSettings:
    """Settings of ``service`` on a database and groups nobody else uses, reading only what comes next."""
    cls, _ = BUILD[service]
    options: dict[str, Any] = {"mongodb_database": f"test_{service}_{unique}",
                               "kafka_group_id": f"test-{service}-{unique}", "kafka_auto_offset_reset": "latest",
                               "api_keys": keys}
    if service == "tiering":  # a periodic refresh over a test database only adds load
        options["refresh_interval_s"] = 0
    return cls(**{**options, **overrides})


def build(service: str, settings: ServiceSettings) -> FastAPI:
    return BUILD[service][1](settings)


def operations(service: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``(METHOD, path, operation)`` of every route in the committed OpenAPI document of ``service``."""
    document = json.loads((OPENAPI / f"{service}.json").read_text())
    return [(method.upper(), path, operation) for path, item in document["paths"].items()
            for method, operation in item.items() if method in METHODS]


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` running in this process, with an HTTP client that sees an unhandled error as the 500
    a caller would get rather than as the exception."""
    async with running(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client
