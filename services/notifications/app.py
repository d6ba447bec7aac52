"""The one factory of the notifications service."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from shared.clock import Clock
from shared.pii import PiiCipher
from shared.service import Runtime

from . import api, handlers, repository
from .channels import Channel, EmailChannel, SmsChannel, WebhookChannel
from .workflow import STAFF_WEBHOOK, Workflow
from .scheduler import Scheduler
from .settings import NotificationsSettings
from .templates import Templates

TITLE = "Notifications service"
DESCRIPTION = "Care and holiday messages within consent, quiet hours and frequency caps."


def build_channels(settings: NotificationsSettings) -> dict[str, Channel]:
    timeout = settings.channel_timeout_s
    channels: dict[str, Channel] = {
        "email": EmailChannel(host=settings.smtp_host, port=settings.smtp_port, sender=settings.smtp_from,
                              username=settings.smtp_username, password=settings.smtp_password.get_secret_value(),
                              start_tls=settings.smtp_start_tls, timeout=timeout, pool_size=settings.smtp_pool_size),
        "sms": SmsChannel(settings.sms_url, settings.sms_api_key.get_secret_value(), timeout),
    }
    if settings.webhook_url:
        channels["webhook"] = WebhookChannel(settings.webhook_url, settings.webhook_secret.get_secret_value(), timeout)
    # Staff alerts go to each person's own webhook, not to the customers' integration.
    channels[STAFF_WEBHOOK] = WebhookChannel("", settings.webhook_secret.get_secret_value(), timeout)
    return channels


def build_app(settings: NotificationsSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()
    runtime = Runtime.create(settings, clock=clock, indexes=repository.INDEXES, description=DESCRIPTION)
    repo = repository.Repository(runtime.store, PiiCipher.from_settings(settings))
    channels = build_channels(settings)
    workflow = Workflow(settings, repo, Templates(settings.default_locale), channels, runtime.clock, runtime.publisher)
    runtime.include(handlers.build_router(settings, repo, workflow, runtime.clock, runtime.dead_letters))
    scheduler = Scheduler(settings, repo, workflow)

    async def scheduler_loop() -> None:
        try:
            await scheduler.run_forever()
        except asyncio.CancelledError:  # the service stops: release pooled connections
            for channel in channels.values():
                await channel.close()
            raise

    runtime.add_task(scheduler_loop)
    return runtime.http_app(title=TITLE, description=DESCRIPTION, routers=[api.router],
                            state={"repo": repo, "workflow": workflow, "scheduler": scheduler})
