"""Settings of the complaints service: the shared ones plus its own, prefixed ``COMPLAINTS_``."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ComplaintsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="COMPLAINTS_")

    service_name: str = "complaints"
    http_port: int = 8003
