"""Settings of the tiering service: the shared ones plus its own, prefixed ``TIERING_``."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class TieringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TIERING_")

    service_name: str = "tiering"
    http_port: int = 8002
