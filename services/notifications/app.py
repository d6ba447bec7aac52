"""The one factory of the notifications service."""

from __future__ import annotations

from fastapi import FastAPI

from shared.clock import Clock
from shared.service import Runtime

from . import api, handlers, repository
from .settings import NotificationsSettings

TITLE = "Notifications service"
DESCRIPTION = "Care and holiday messages within consent, quiet hours and frequency caps."


def build_app(settings: NotificationsSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()
    runtime = Runtime.create(settings, clock=clock, indexes=repository.INDEXES, description=DESCRIPTION)
    repo = repository.Repository(runtime.store)
    runtime.include(handlers.build_router(settings, repo))
    return runtime.http_app(title=TITLE, description=DESCRIPTION, routers=[api.router], state={"repo": repo})
