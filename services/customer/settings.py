"""Settings of the customer service: the shared ones plus its own, prefixed ``CUSTOMER_``."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.settings import ServiceSettings

# Development-only key material: refused by the shared validator outside ENVIRONMENT=development.
DEV_PII_KEY_ID = "dev-1"
DEV_PII_KEY = base64.b64encode(b"carecrm-development-pii-key-0001").decode()
DEV_BLIND_INDEX_KEY = base64.b64encode(b"carecrm-development-blind-idx-01").decode()


def decode_key(value: str, name: str) -> bytes:
    """A base64 setting holding exactly 32 bytes of key material."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} must be base64") from None
    if len(raw) != 32:
        raise ValueError(f"{name} must decode to 32 bytes, got {len(raw)}")
    return raw


class CustomerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTOMER_")

    service_name: str = "customer"
    http_port: int = 8001

    #: JSON ``{key_id: base64 32-byte key}``: every key that may still protect stored values.
    pii_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=lambda: {DEV_PII_KEY_ID: SecretStr(DEV_PII_KEY)})
    #: The key new and re-encrypted values are sealed with.
    pii_active_key_id: str = DEV_PII_KEY_ID
    #: Base64 32-byte HMAC key of the phone and e-mail blind indexes.
    blind_index_key: SecretStr = SecretStr(DEV_BLIND_INDEX_KEY)
    #: Documents re-encrypted per round by ``rotate-keys``.
    rotation_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 200
    #: Customers of one batch whose events are applied side by side (each customer's in order).
    concurrency: Annotated[int, Field(ge=1, le=500)] = 64
    #: Largest page the list and timeline endpoints return.
    max_page_size: Annotated[int, Field(ge=1, le=1000)] = 200

    @field_validator("pii_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError("CUSTOMER_PII_KEYS must be a JSON object {key_id: base64 key}") from None
        return value

    @model_validator(mode="after")
    def _keys_usable(self) -> CustomerSettings:
        if not self.pii_keys:
            raise ValueError("CUSTOMER_PII_KEYS holds no key")
        for key_id, key in self.pii_keys.items():
            decode_key(key.get_secret_value(), f"CUSTOMER_PII_KEYS[{key_id}]")
        if self.pii_active_key_id not in self.pii_keys:
            raise ValueError("CUSTOMER_PII_ACTIVE_KEY_ID names no key of CUSTOMER_PII_KEYS")
        decode_key(self.blind_index_key.get_secret_value(), "CUSTOMER_BLIND_INDEX_KEY")
        return self

    def _development_secrets(self) -> list[str]:
        names = []
        if any(key.get_secret_value() == DEV_PII_KEY for key in self.pii_keys.values()):
            names.append("customer_pii_keys")
        if self.blind_index_key.get_secret_value() == DEV_BLIND_INDEX_KEY:
            names.append("customer_blind_index_key")
        return names
