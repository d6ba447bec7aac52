"""The one factory of the customer service."""

from __future__ import annotations

from fastapi import FastAPI

from shared.clock import Clock
from shared.service import Runtime

from . import api, handlers, repository
from .settings import CustomerSettings

TITLE = "Customer service"
DESCRIPTION = "The system of record for customer profiles, contacts, consents and the 360-degree view."


def build_app(settings: CustomerSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or CustomerSettings()
    runtime = Runtime.create(settings, clock=clock, indexes=repository.INDEXES, description=DESCRIPTION)
    repo = repository.Repository(runtime.store)
    runtime.include(handlers.build_router(settings, repo))
    return runtime.http_app(title=TITLE, description=DESCRIPTION, routers=[api.router], state={"repo": repo})
