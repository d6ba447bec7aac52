"""Settings of the customer service: the shared ones plus its own, prefixed ``CUSTOMER_``."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.pii import PiiSettings


class CustomerSettings(PiiSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTOMER_")

    service_name: str = "customer"
    http_port: int = 8001

    #: Documents re-encrypted per round by ``rotate-keys``.
    #: Customers of one batch whose events are applied side by side (each customer's in order).
    concurrency: Annotated[int, Field(ge=1, le=500)] = 64
    #: Largest page the list and timeline endpoints return.
    max_page_size: Annotated[int, Field(ge=1, le=1000)] = 200
