from __future__ import annotations

import base64
import json
import os

import pytest
from pydantic import ValidationError

from services.customer.settings import CustomerSettings


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_development_keys_are_refused_outside_development() -> None:
    with pytest.raises(ValidationError, match="CUSTOMER_PII_KEYS keeps its development default"):
        CustomerSettings(environment="production")
    with pytest.raises(ValidationError, match="CUSTOMER_BLIND_INDEX_KEY keeps its development default"):
        CustomerSettings(environment="production", pii_keys={"k1": _key()}, pii_active_key_id="k1")


def test_development_keys_are_allowed_in_development() -> None:
    assert CustomerSettings(environment="development").pii_active_key_id == "dev-1"


def test_keys_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {"2026-01": _key(), "2026-06": _key()}
    monkeypatch.setenv("CUSTOMER_PII_KEYS", json.dumps(keys))
    monkeypatch.setenv("CUSTOMER_PII_ACTIVE_KEY_ID", "2026-06")
    monkeypatch.setenv("CUSTOMER_BLIND_INDEX_KEY", _key())
    settings = CustomerSettings(environment="production")
    assert settings.pii_active_key_id == "2026-06"
    assert {k: v.get_secret_value() for k, v in settings.pii_keys.items()} == keys


def test_a_key_of_the_wrong_length_is_refused() -> None:
    short = base64.b64encode(os.urandom(16)).decode()
    with pytest.raises(ValidationError, match=r"CUSTOMER_PII_KEYS\[k1\] must decode to 32 bytes"):
        CustomerSettings(pii_keys={"k1": short}, pii_active_key_id="k1")


def test_an_active_key_id_without_a_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="CUSTOMER_PII_ACTIVE_KEY_ID names no key"):
        CustomerSettings(pii_keys={"k1": _key()}, pii_active_key_id="k2")


def test_keys_that_are_not_json_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMER_PII_KEYS", "k1=abc")
    with pytest.raises(ValidationError, match="must be a JSON object"):
        CustomerSettings()
