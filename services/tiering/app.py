"""The one factory of the tiering service."""

from __future__ import annotations

from fastapi import FastAPI

from shared.clock import Clock
from shared.service import Runtime

from . import api, handlers, repository
from .settings import TieringSettings

TITLE = "Tiering service"
DESCRIPTION = "Keeps per-customer metrics and classifies every customer under a versioned policy."


def build_app(settings: TieringSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or TieringSettings()
    runtime = Runtime.create(settings, clock=clock, indexes=repository.INDEXES, description=DESCRIPTION)
    repo = repository.Repository(runtime.store)
    runtime.include(handlers.build_router(settings, repo))
    return runtime.http_app(title=TITLE, description=DESCRIPTION, routers=[api.router], state={"repo": repo})
