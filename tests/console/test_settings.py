"""The console's settings, and its entry in the compose file (checked statically, like the services')."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from console.settings import ConsoleSettings

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"


def test_outside_development_a_session_secret_is_required() -> None:
    with pytest.raises(ValueError, match="CONSOLE_SESSION_SECRET"):
        ConsoleSettings(environment="production")
    with pytest.raises(ValueError, match="CONSOLE_SESSION_SECRET"):
        ConsoleSettings(environment="staging", session_secret="too short")
    settings = ConsoleSettings(environment="production", session_secret="s" * 40)
    assert settings.secure_cookies and settings.secret() == "s" * 40


def test_in_development_a_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = ConsoleSettings(environment="development", secret_file=tmp_path / "run" / "console-secret")
    first = settings.secret()
    assert len(first) >= 32 and settings.secret() == first
    assert stat.S_IMODE((tmp_path / "run" / "console-secret").stat().st_mode) == 0o600
    assert not settings.secure_cookies


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("CONSOLE_TIERING_URL", "http://tiering.internal:9002/")
    monkeypatch.setenv("CONSOLE_HTTP_PORT", "9000")
    monkeypatch.setenv("HTTP_PORT", "1234")  # a service's setting: the console's port is its own
    settings = ConsoleSettings()
    assert settings.tiering_url == "http://tiering.internal:9002" and settings.http_port == 9000
    assert settings.customer_url == "http://127.0.0.1:8001"
    with pytest.raises(ValueError):
        ConsoleSettings(customer_url="ftp://nowhere")


def test_the_compose_console_is_configured_by_settings_it_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    console = services["console"]
    assert console["command"] == ["python", "-m", "console"] and console["image"] == "carecrm:latest"
    env = console["environment"]
    readable = {f"CONSOLE_{name}".upper() for name in ConsoleSettings.model_fields} | {
        "ENVIRONMENT", "LOG_LEVEL", "LOG_FORMAT"}
    assert set(env) <= readable
    for key, value in env.items():
        monkeypatch.setenv(key, "s" * 48 if key == "CONSOLE_SESSION_SECRET" else
                           "true" if key == "CONSOLE_COOKIE_SECURE" else str(value))
    settings = ConsoleSettings()
    assert settings.environment == "production" and settings.http_host == "0.0.0.0"
    assert console["ports"] == [f"{settings.http_port}:{settings.http_port}"]
    for name, url in settings.service_urls().items():
        host, port = url.removeprefix("http://").split(":")
        assert host in services and f"{port}:{port}" in services[host]["ports"], name
