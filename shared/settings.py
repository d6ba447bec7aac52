"""Typed settings: the only place that reads the environment.

Every setting can be given for one service with its prefix (``TIERING_LOG_LEVEL``) or for all
services without it (``LOG_LEVEL``); the prefixed one wins. Secrets keep development defaults only
while ``ENVIRONMENT=development``; anywhere else a default secret is refused at start.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

Environment = Literal["development", "test", "staging", "production"]
Scope = Annotated[str, Field(pattern=r"^[a-z_]+:[a-z_]+$")]


class ApiKey(BaseModel):
    """An API key as settings hold it: a name, the SHA-256 of the key, and its scopes."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    scopes: frozenset[Scope]

    @classmethod
    def from_plaintext(cls, name: str, key: str, scopes: set[str] | frozenset[str]) -> ApiKey:
        return cls(name=name, sha256=hashlib.sha256(key.encode()).hexdigest(), scopes=frozenset(scopes))


class ServiceSettings(BaseSettings):
    """What every service needs: Kafka, MongoDB, logging, clock, HTTP and API keys."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)

    service_name: str = "service"
    environment: Environment = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    # Kafka
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_check_hostname: bool = True
    kafka_replication_factor: Annotated[int, Field(ge=1, le=5)] = 1
    kafka_topic_partitions: Annotated[int, Field(ge=1, le=256)] = 6
    #: Consumer group; defaults to ``carecrm-<service_name>``.
    kafka_group_id: str | None = None
    kafka_auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    kafka_create_topics: bool = True
    #: Retries for an error that is not the message's fault before it goes to the DLQ.
    handler_max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    #: Records per batch a batch subscriber reads (its offsets committed once all of it is applied).
    batch_max_records: Annotated[int, Field(ge=1, le=20_000)] = 500
    #: Milliseconds a batch waits to fill before it is handled with what it has.
    batch_timeout_ms: Annotated[int, Field(ge=1, le=10_000)] = 20

    # MongoDB
    mongodb_url: SecretStr = SecretStr("mongodb://127.0.0.1:27017/")
    mongodb_database: str | None = None
    mongodb_timeout_ms: Annotated[int, Field(ge=100)] = 5000

    # Time: ``wall`` in production; ``event`` judges rules as of the newest event time seen (replays).
    clock: Literal["wall", "event"] = "wall"

    # HTTP
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8000
    #: JSON list of ``{"name", "sha256", "scopes"}``; see ``python -m shared.auth new-key``.
    api_keys: Annotated[tuple[ApiKey, ...], NoDecode] = ()

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            return json.loads(value) if value else ()
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers or any(":" not in s for s in servers):
            raise ValueError("KAFKA_BOOTSTRAP_SERVERS must be a comma-separated list of host:port")
        return ",".join(servers)

    @model_validator(mode="after")
    def _security(self) -> ServiceSettings:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError("SASL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        if self.environment != "development":
            for name in self._development_secrets():
                raise ValueError(f"{name.upper()} keeps its development default; set it for {self.environment}")
        return self

    def _development_secrets(self) -> list[str]:
        """Names of secret settings still at their development default (services add theirs)."""
        return []

    @property
    def group_id(self) -> str:
        return self.kafka_group_id or f"carecrm-{self.service_name}"

    def group_for(self, topic: str) -> str:
        """The consumer group of this service's subscription to ``topic``: one group per topic, since
        members of one group on different topics rebalance each other on every join for no gain."""
        return f"{self.group_id}.{topic}"

    @property
    def database_name(self) -> str:
        return self.mongodb_database or f"carecrm_{self.service_name}"

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            return None
        context = ssl.create_default_context(cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None)
        if self.kafka_ssl_certfile:
            context.load_cert_chain(str(self.kafka_ssl_certfile),
                                    str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None)
        context.check_hostname = self.kafka_ssl_check_hostname
        return context

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        shared_env = EnvSettingsSource(settings_cls, env_prefix="", case_sensitive=False)
        return init_settings, env_settings, shared_env, dotenv_settings, file_secret_settings
