"""Settings of the console, read from the environment (prefix ``CONSOLE_``).

``ENVIRONMENT``, ``LOG_LEVEL`` and ``LOG_FORMAT`` may also be given without the prefix, as for the
services. The session secret keeps a generated development value (in ``.run/``) only while
``ENVIRONMENT=development``; anywhere else it must be set.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "staging", "production"]
SERVICES = ("customer", "tiering", "complaints", "notifications")


def _default_secret_file() -> Path:
    # Same run directory as ``make up`` (deploy/local/infra.py reads the same variable).
    return Path(os.environ.get("CARECRM_RUN_DIR") or ".run") / "console-secret"


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore", frozen=True, case_sensitive=False)

    environment: Environment = Field("development",
                                     validation_alias=AliasChoices("CONSOLE_ENVIRONMENT", "ENVIRONMENT"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=AliasChoices("CONSOLE_LOG_LEVEL", "LOG_LEVEL"))
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", validation_alias=AliasChoices("CONSOLE_LOG_FORMAT", "LOG_FORMAT"))

    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8000

    # The four services' base URLs: the console talks to nobody else.
    customer_url: str = "http://127.0.0.1:8001"
    tiering_url: str = "http://127.0.0.1:8002"
    complaints_url: str = "http://127.0.0.1:8003"
    notifications_url: str = "http://127.0.0.1:8004"
    #: Seconds a page waits for a service before it says the service is not answering.
    upstream_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    #: Seconds the dashboard waits for a report route: a report reads a whole population or period
    #: (tens of seconds at 100,000 customers), and its figures are then reused (``report_cache_s``).
    report_timeout_s: Annotated[float, Field(gt=0, le=600)] = 120.0

    #: Signs and encrypts the session cookie; required outside development.
    session_secret: SecretStr | None = None
    #: Where a development secret is generated and kept when none is given.
    secret_file: Path = Field(default_factory=_default_secret_file)
    session_ttl_s: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 8 * 3600
    #: Seconds after which a session asks the services again what its key may do.
    scopes_ttl_s: Annotated[int, Field(ge=10, le=24 * 3600)] = 900
    #: ``Secure`` flag of the cookies; on by default outside development (serve behind TLS there).
    cookie_secure: bool | None = None

    #: Failed sign-ins per client address within the window before further attempts get 429.
    login_failures: Annotated[int, Field(ge=1, le=1000)] = 5
    login_window_s: Annotated[int, Field(ge=1, le=3600)] = 60

    #: Time zone in which pages show times.
    timezone: str = "Asia/Shanghai"
    #: Language for a user who has not chosen one.
    default_language: Literal["zh-CN", "en-US"] = "zh-CN"
    #: Seconds the dashboard's figures are reused before the report routes are asked again.
    report_cache_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    #: Seconds between two refreshes of the complaint queue in the browser.
    queue_refresh_s: Annotated[int, Field(ge=3, le=3600)] = 15

    @field_validator("customer_url", "tiering_url", "complaints_url", "notifications_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("a service URL starts with http:// or https://")
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _secret_outside_development(self) -> ConsoleSettings:
        if self.environment != "development":
            if self.session_secret is None or len(self.session_secret.get_secret_value()) < 32:
                raise ValueError(f"CONSOLE_SESSION_SECRET (32 characters or more) is required for {self.environment}")
        return self

    @property
    def secure_cookies(self) -> bool:
        return self.cookie_secure if self.cookie_secure is not None else self.environment != "development"

    def service_urls(self) -> dict[str, str]:
        return {name: getattr(self, f"{name}_url") for name in SERVICES}

    def secret(self) -> str:
        """The session secret: the configured one, or in development one kept in ``secret_file``."""
        if self.session_secret is not None:
            return self.session_secret.get_secret_value()
        path = self.secret_file
        if path.exists():
            value = path.read_text().strip()
            if len(value) >= 32:
                return value
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        # Created private from the start: the secret never sits readable by others.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
        return value
