"""Settings: per-service prefixes, validation, and no default secrets outside development."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from shared.settings import ApiKey, ServiceSettings


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")

    service_name: str = "demo"
    http_port: int = 8009
    signing_secret: str = "development-only"

    def _development_secrets(self) -> list[str]:
        return ["demo_signing_secret"] if self.signing_secret == "development-only" else []


def test_a_prefixed_variable_wins_over_the_shared_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("DEMO_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092, kafka-2:9092")
    settings = DemoSettings()
    assert settings.log_level == "WARNING"
    assert settings.kafka_bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.http_port == 8009
    assert settings.group_id == "carecrm-demo"
    assert settings.database_name == "carecrm_demo"


def test_a_bootstrap_list_without_ports_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka")
    with pytest.raises(ValidationError, match="host:port"):
        DemoSettings()


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME"):
        DemoSettings(kafka_security_protocol="SASL_SSL")
    ok = DemoSettings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc", kafka_sasl_password="pw")
    assert ok.kafka_sasl_password is not None and ok.kafka_sasl_password.get_secret_value() == "pw"
    assert "pw" not in repr(ok)


def test_a_default_secret_is_refused_outside_development() -> None:
    assert DemoSettings(environment="development").signing_secret == "development-only"
    with pytest.raises(ValidationError, match="DEMO_SIGNING_SECRET"):
        DemoSettings(environment="production")
    assert DemoSettings(environment="production", signing_secret="s3cret").environment == "production"


def test_api_keys_are_read_as_json_and_hold_only_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = ApiKey.from_plaintext("ops", "ck_plaintext", {"customers:read"})
    monkeypatch.setenv("API_KEYS", f'[{entry.model_dump_json()}]')
    settings = DemoSettings()
    assert settings.api_keys == (entry,)
    assert "ck_plaintext" not in settings.model_dump_json()


def test_a_malformed_scope_is_refused() -> None:
    with pytest.raises(ValidationError):
        ApiKey(name="x", sha256="a" * 64, scopes=frozenset({"everything"}))


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        DemoSettings().http_port = 1  # type: ignore[misc]
