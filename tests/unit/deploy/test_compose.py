"""The compose file cannot run here (no container engine), so it is checked statically.

Every variable it sets on a service must be one that service's settings read; ports, commands and
host names must agree with the settings and with each other.
"""

from __future__ import annotations

import base64
import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.complaints.staff import load
from shared.settings import ServiceSettings

COMPOSE = Path(__file__).resolve().parents[3] / "deploy" / "compose.yaml"
SERVICES = ("customer", "tiering", "complaints", "notifications")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{service}.settings")
    return next(v for v in vars(module).values()
                if isinstance(v, type) and issubclass(v, ServiceSettings) and v.__module__ == module.__name__)


def readable_names(cls: type[ServiceSettings]) -> set[str]:
    prefix = cls.model_config.get("env_prefix", "")
    names = set()
    for field in cls.model_fields:
        names.add(field.upper())
        names.add(f"{prefix}{field}".upper())
    return names


def resolved(env: dict[str, Any]) -> dict[str, str]:
    """Environment as compose would pass it, with required ``${VAR:?...}`` given sample values."""
    key = base64.b64encode(b"k" * 32).decode()
    samples = {
        "API_KEYS": '[{"name":"ops","sha256":"' + "a" * 64 + '","scopes":["customers:read"]}]',
        **{f"{service}_PII_KEYS": json.dumps({"k1": key}) for service in ("CUSTOMER", "COMPLAINTS", "NOTIFICATIONS")},
        **{f"{service}_PII_ACTIVE_KEY_ID": "k1" for service in ("CUSTOMER", "COMPLAINTS", "NOTIFICATIONS")},
        **{f"{service}_BLIND_INDEX_KEY": key for service in ("CUSTOMER", "COMPLAINTS", "NOTIFICATIONS")},
        "CUSTOMER_BLIND_INDEX_KEY": base64.b64encode(b"b" * 32).decode(),
        "NOTIFICATIONS_SMTP_PORT": "587",
        "NOTIFICATIONS_SMTP_HOST": "smtp.example.com",
        "NOTIFICATIONS_SMS_URL": "https://sms.example.com/send",
        "NOTIFICATIONS_WEBHOOK_URL": "https://hooks.example.com/care",
    }
    out = {}
    for key, value in env.items():
        text = str(value)
        match = re.fullmatch(r"\$\{(\w+)(?::?([?-])(.*))?\}", text)
        if match is None:
            out[key] = text
        else:  # an unset ``${VAR:-default}`` gives its default
            name, kind, default = match.groups()
            out[key] = samples.get(name, default if kind == "-" else "sample-" + name.lower())
    return out


def test_the_four_services_run_from_one_image_chosen_by_their_command(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SERVICES:
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]
        assert services[name]["image"] == "carecrm:latest"
    assert {"kafka", "mongo", "topics"} <= set(services)


@pytest.mark.parametrize("service", SERVICES)
def test_every_variable_set_on_a_service_is_a_setting_it_reads(compose: dict[str, Any], service: str) -> None:
    env = compose["services"][service]["environment"]
    unknown = set(env) - readable_names(settings_class(service))
    assert not unknown, f"{service} does not read {sorted(unknown)}"


@pytest.mark.parametrize("service", SERVICES)
def test_the_settings_accept_the_compose_environment_in_production(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in resolved(compose["services"][service]["environment"]).items():
        monkeypatch.setenv(key, value)
    settings = settings_class(service)()
    assert settings.environment == "production"
    assert settings.kafka_bootstrap_servers == "kafka:9092"


@pytest.mark.parametrize("service", SERVICES)
def test_published_port_health_check_and_settings_agree(compose: dict[str, Any], service: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = compose["services"][service]
    cls = settings_class(service)
    default_port = cls.model_fields["http_port"].default
    env = resolved(spec["environment"])
    prefix = cls.model_config["env_prefix"]
    assert int(env[f"{prefix}HTTP_PORT"]) == default_port
    assert spec["ports"] == [f"{default_port}:{default_port}"]
    assert f"127.0.0.1:{default_port}/health" in " ".join(spec["healthcheck"]["test"])
    assert env["HTTP_HOST"] == "0.0.0.0"


def test_the_topic_initialiser_reads_only_shared_settings(compose: dict[str, Any]) -> None:
    topics = compose["services"]["topics"]
    assert topics["command"] == ["carecrm", "ensure-topics"]
    assert set(topics["environment"]) <= readable_names(ServiceSettings)


def test_host_names_in_addresses_are_services_of_the_file(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka_env = services["kafka"]["environment"]
    assert "PLAINTEXT://kafka:9092" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka_env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    for name in (*SERVICES, "topics"):
        env = services[name]["environment"]
        host = env["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0]
        assert host in services
        if "MONGODB_URL" in env:
            assert re.match(r"mongodb://(\w+):27017/", env["MONGODB_URL"]).group(1) in services
        for dependency in services[name].get("depends_on", {}):
            assert dependency in services


def test_kafka_is_given_the_full_kraft_configuration(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    required = {"KAFKA_NODE_ID", "KAFKA_PROCESS_ROLES", "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS",
                "KAFKA_CONTROLLER_LISTENER_NAMES", "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                "KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"}
    assert required <= set(env)
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_staff_alerts_reach_people_as_in_a_local_deployment(compose: dict[str, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    complaints, notifications = compose["services"]["complaints"], compose["services"]["notifications"]
    # The staff directory is a file mounted where the setting names it; by default the shipped one.
    path = complaints["environment"]["COMPLAINTS_STAFF_FILE"]
    [mount] = [v for v in complaints["volumes"] if v.endswith(f":{path}:ro")]
    source = re.fullmatch(r"\$\{STAFF_FILE:-(.+)\}", mount.split(":/", 1)[0]).group(1)
    assert (COMPOSE.parent / source).resolve() == (COMPOSE.parents[1] / "services" / "complaints" /
                                                   "staff.default.yaml")
    assert load(str(COMPOSE.parent / source)).team("care") is not None
    # Staff webhooks are called only under prefixes the operator allows; none by default.
    for key, value in resolved(notifications["environment"]).items():
        monkeypatch.setenv(key, value)
    assert settings_class("notifications")().staff_webhook_prefixes == ()
    monkeypatch.setenv("NOTIFICATIONS_STAFF_WEBHOOK_PREFIXES", '["https://chat.example.com/hooks/"]')
    assert settings_class("notifications")().staff_webhook_prefixes == ("https://chat.example.com/hooks/",)
