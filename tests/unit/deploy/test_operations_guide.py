"""The operations guide lists every setting, topic and dead-letter reason the code has, and no other.

Settings rows are ``| `NAME` | `default` | meaning |`` under the guide's "Settings" heading; a simple
default (one that is not a secret and fits on a line) must be the code's.
"""

from __future__ import annotations

import importlib
import json
import re
from datetime import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, TypeAdapter
from pydantic.fields import FieldInfo

from shared.contract.topics import CATALOGUE, DAY_MS, DLQ_CATALOGUE
from shared.settings import ServiceSettings

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "operations.md"
SERVICES = ("customer", "tiering", "complaints", "notifications")
ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]+)` \| (.+?) \|", re.M)


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{service}.settings")
    return next(v for v in vars(module).values()
                if isinstance(v, type) and issubclass(v, ServiceSettings) and v.__module__ == module.__name__)


def own_fields(cls: type[ServiceSettings]) -> dict[str, FieldInfo]:
    """The fields a service adds, and the shared ones it gives another default."""
    shared = ServiceSettings.model_fields
    return {name: field for name, field in cls.model_fields.items()
            if name not in shared or _default(field) != _default(shared[name])}


def _default(field: FieldInfo) -> Any:
    return field.get_default(call_default_factory=True)


def rendered_default(field: FieldInfo) -> str | None:
    """How the guide writes the default, or None where it explains it in words instead."""
    value = _default(field)
    if isinstance(value, SecretStr) or "SecretStr" in str(field.annotation):
        return None
    if value is None:
        return "-"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str | int | float):
        return f"`{value}`"
    if isinstance(value, time):
        return f"`{value.strftime('%H:%M')}`"
    text = TypeAdapter(field.annotation).dump_json(value).decode()
    return f"`{text}`" if len(text) <= 60 else None


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text()


@pytest.fixture(scope="module")
def settings_rows(guide: str) -> dict[str, str]:
    section = guide.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for name, default in ROW.findall(section):
        assert name not in rows, f"{name} is listed twice"
        rows[name] = default.strip()
    return rows


def expected_rows() -> dict[str, FieldInfo]:
    rows = {name.upper(): field for name, field in ServiceSettings.model_fields.items()}
    for service in SERVICES:
        cls = settings_class(service)
        prefix = cls.model_config["env_prefix"]
        rows.update({f"{prefix}{name}".upper(): field for name, field in own_fields(cls).items()})
    return rows


def test_every_setting_of_every_service_has_a_row_and_every_row_is_a_setting(settings_rows: dict[str, str]) -> None:
    expected = expected_rows()
    assert sorted(set(expected) - set(settings_rows)) == [], "settings missing from the guide"
    assert sorted(set(settings_rows) - set(expected)) == [], "rows for settings the code does not have"


def test_the_defaults_in_the_guide_are_the_code_defaults(settings_rows: dict[str, str]) -> None:
    overridden = {name for service in SERVICES for name in own_fields(settings_class(service))
                  if name in ServiceSettings.model_fields}
    wrong = {}
    for name, field in expected_rows().items():
        default = rendered_default(field)
        if default is None or name.lower() in overridden:  # per-service defaults are in the service tables
            continue
        if settings_rows[name] != default:
            wrong[name] = (settings_rows[name], default)
    assert not wrong, f"(guide, code): {wrong}"


def test_every_topic_is_listed_with_its_cleanup_policy_and_retention(guide: str) -> None:
    for spec in (*CATALOGUE, *DLQ_CATALOGUE):
        row = re.search(rf"^\| `{re.escape(spec.name)}` \|(.+)$", guide, re.M)
        assert row, f"{spec.name} has no row"
        if spec.compacted:
            assert "compact" in row.group(1), spec.name
        else:
            days = int(spec.config["retention.ms"]) // DAY_MS
            assert f"delete, {days} d" in row.group(1), spec.name


def test_every_dead_letter_reason_the_code_raises_is_explained(guide: str) -> None:
    root = Path(__file__).resolve().parents[3]
    sources = [*root.glob("shared/**/*.py"), *root.glob("services/**/*.py")]
    codes = set()
    for path in sources:
        text = path.read_text()
        codes |= set(re.findall(r'(?:ContractError|RuleViolation|Rejected)\(\s*"([a-z_]+)"', text))
        codes |= set(re.findall(r'dead_letter\([^,]+, "([a-z_]+)"', text))
    assert {"invalid_json", "unknown_currency", "processing_failed"} <= codes  # the search finds them
    missing = sorted(code for code in codes if f"`{code}`" not in guide)
    assert not missing, f"dead-letter reasons missing from the guide: {missing}"


def test_every_scope_the_apis_require_is_listed(guide: str) -> None:
    root = Path(__file__).resolve().parents[3]
    scopes = set()
    for path in root.glob("services/*/api.py"):
        for call in re.findall(r"require\(([^)]*)\)", path.read_text()):
            scopes |= set(re.findall(r'"([a-z_]+:[a-z_]+)"', call))
    assert len(scopes) >= 10
    missing = sorted(scope for scope in scopes if f"`{scope}`" not in guide)
    assert not missing, f"scopes missing from the guide: {missing}"


def test_the_json_defaults_are_valid_json_in_the_guide(settings_rows: dict[str, str]) -> None:
    for name, cell in settings_rows.items():
        if cell.startswith("`[") or cell.startswith("`{"):
            json.loads(cell.strip("`"))
