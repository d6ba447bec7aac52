"""The one factory of the customer service."""

from __future__ import annotations

from fastapi import FastAPI
from faststream.kafka import KafkaRouter

from shared.clock import Clock
from shared.contract.events import CustomerProfileChanged, InteractionRecorded
from shared.contract.topics import CRM_CUSTOMERS, CRM_INTERACTIONS
from shared.pii import PiiCipher
from shared.service import Runtime

from . import api, handlers, repository
from .activity import Activity
from .settings import CustomerSettings
from .workflow import Workflow

TITLE = "Customer service"
DESCRIPTION = "The system of record for customer profiles, contacts, consents and the 360-degree view."


def build_app(settings: CustomerSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or CustomerSettings()
    runtime = Runtime.create(settings, clock=clock, indexes=repository.INDEXES, description=DESCRIPTION)
    repo = repository.Repository(runtime.store, PiiCipher.from_settings(settings))
    # What the service publishes (through ``runtime.publisher``), declared for the AsyncAPI document.
    outbound = KafkaRouter()
    outbound.publisher(
        CRM_CUSTOMERS, title="customer-profiles", schema=CustomerProfileChanged,
        description="customer.profile.changed with the full current profile after every change (compacted, "
                    "keyed by customer id); on erasure customer.erased, then a tombstone for the key.")
    outbound.publisher(
        CRM_INTERACTIONS, title="recorded-interactions", schema=InteractionRecorded,
        description="customer.interaction.recorded for follow-up calls and visits recorded through the API.")
    workflow = Workflow(repo, runtime.publisher, runtime.clock)
    activity = Activity(workflow, repo, concurrency=settings.concurrency, max_attempts=settings.handler_max_attempts)
    runtime.include(handlers.build_router(settings, activity, runtime.dead_letters))
    runtime.include(outbound)
    return runtime.http_app(title=TITLE, description=DESCRIPTION, routers=[api.router],
                            state={"repo": repo, "workflow": workflow})
