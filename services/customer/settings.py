"""Settings of the customer service: the shared ones plus its own, prefixed ``CUSTOMER_``."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class CustomerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTOMER_")

    service_name: str = "customer"
    http_port: int = 8001
