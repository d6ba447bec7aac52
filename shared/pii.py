"""Field-level encryption of personal data (AES-GCM) and HMAC blind indexes for exact lookup, for
every service that stores personal data, each under its own keys.

Every sealed value carries the id of the key that sealed it, so keys can rotate while old values
stay readable. The associated data binds a ciphertext to its document and field: a value copied
into another customer's document does not decrypt. The blind-index key rotates too: documents note
the id of the key their indexes were made with (``bidx_kid``), lookups try the previous keys as
well until a rotation has made every index again under the new one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Annotated, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from .settings import ServiceSettings

_NONCE_BYTES = 12
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


class PiiSettings(ServiceSettings):
    """The keys of a service that stores personal data, under the service's own prefix
    (``CUSTOMER_PII_KEYS``, ``COMPLAINTS_PII_KEYS``, ...)."""

    #: JSON ``{key_id: base64 32-byte key}``: every key that may still protect stored values.
    pii_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=lambda: {DEV_PII_KEY_ID: SecretStr(DEV_PII_KEY)})
    #: The key new and re-encrypted values are sealed with.
    pii_active_key_id: str = DEV_PII_KEY_ID
    #: Base64 32-byte HMAC key of the blind indexes (exact lookups of sealed values).
    blind_index_key: SecretStr = SecretStr(DEV_BLIND_INDEX_KEY)
    #: JSON list of base64 blind-index keys used before ``blind_index_key``: lookups try them too
    #: until ``rotate-keys`` has made every index again; then they can go.
    blind_index_previous_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    #: Documents re-encrypted per round by ``python -m services.<name> rotate-keys``.
    rotation_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 200

    @property
    def _prefix(self) -> str:
        return str(self.model_config.get("env_prefix") or "")

    @field_validator("pii_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError("PII_KEYS must be a JSON object {key_id: base64 key}") from None
        return value

    @field_validator("blind_index_previous_keys", mode="before")
    @classmethod
    def _parse_previous(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else []
            except json.JSONDecodeError:
                raise ValueError("BLIND_INDEX_PREVIOUS_KEYS must be a JSON list of base64 keys") from None
        return value

    @model_validator(mode="after")
    def _keys_usable(self) -> PiiSettings:
        if not self.pii_keys:
            raise ValueError(f"{self._prefix}PII_KEYS holds no key")
        for key_id, key in self.pii_keys.items():
            decode_key(key.get_secret_value(), f"{self._prefix}PII_KEYS[{key_id}]")
        if self.pii_active_key_id not in self.pii_keys:
            raise ValueError(f"{self._prefix}PII_ACTIVE_KEY_ID names no key of {self._prefix}PII_KEYS")
        decode_key(self.blind_index_key.get_secret_value(), f"{self._prefix}BLIND_INDEX_KEY")
        for n, key in enumerate(self.blind_index_previous_keys):
            decode_key(key.get_secret_value(), f"{self._prefix}BLIND_INDEX_PREVIOUS_KEYS[{n}]")
        return self

    def _development_secrets(self) -> list[str]:
        names = super()._development_secrets()
        prefix = self._prefix.lower()
        if any(key.get_secret_value() == DEV_PII_KEY for key in self.pii_keys.values()):
            names.append(f"{prefix}pii_keys")
        if self.blind_index_key.get_secret_value() == DEV_BLIND_INDEX_KEY:
            names.append(f"{prefix}blind_index_key")
        return names


def context(collection: str, doc_id: str, field: str) -> str:
    """What a sealed value is bound to: a copy in another document or field does not open."""
    return f"{collection}:{doc_id}:{field}"


class UnknownKey(LookupError):
    """A value sealed with a key the settings no longer hold."""


def blind_key_id(key: bytes) -> str:
    """A short public name of a blind-index key (its settings hold no id of their own)."""
    return hashlib.sha256(b"carecrm-blind-index-key-id:" + key).hexdigest()[:12]


class PiiCipher:
    def __init__(self, keys: dict[str, bytes], active_key_id: str, blind_index_key: bytes,
                 previous_blind_index_keys: tuple[bytes, ...] = ()) -> None:
        if active_key_id not in keys:
            raise ValueError("the active key id names no key")
        self._aead = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.active_key_id = active_key_id
        self._blind_keys = [blind_index_key, *(k for k in previous_blind_index_keys if k != blind_index_key)]
        #: The id of the key new blind indexes are made with; documents note it as ``bidx_kid``.
        self.blind_key_id = blind_key_id(blind_index_key)

    @classmethod
    def from_settings(cls, settings: PiiSettings) -> PiiCipher:
        keys = {key_id: decode_key(key.get_secret_value(), key_id) for key_id, key in settings.pii_keys.items()}
        return cls(keys, settings.pii_active_key_id,
                   decode_key(settings.blind_index_key.get_secret_value(), "blind index key"),
                   tuple(decode_key(k.get_secret_value(), "previous blind index key")
                         for k in settings.blind_index_previous_keys))

    def seal(self, value: str, *, context: str) -> dict[str, str]:
        """Encrypt ``value`` under the active key; ``context`` names the document and field."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead[self.active_key_id].encrypt(nonce, value.encode(), context.encode())
        return {"k": self.active_key_id, "n": _b64(nonce), "c": _b64(sealed)}

    def open(self, sealed: Mapping[str, Any], *, context: str) -> str:
        aead = self._aead.get(sealed["k"])
        if aead is None:
            raise UnknownKey(f"no key {sealed['k']!r} to open a stored value")
        try:
            return aead.decrypt(base64.b64decode(sealed["n"]), base64.b64decode(sealed["c"]),
                                context.encode()).decode()
        except InvalidTag:
            raise ValueError("a stored value failed authentication") from None

    def seal_fields(self, doc: dict[str, Any], names: tuple[str, ...], *, collection: str) -> dict[str, Any]:
        """``doc`` with each of ``names`` that holds text moved, sealed, under ``pii`` (and the key
        id under ``pii_kid``, None when nothing is sealed); each bound to the document and field."""
        values = {name: doc.pop(name, None) for name in names}
        doc["pii"] = {name: self.seal(value, context=context(collection, doc["_id"], name))
                      for name, value in values.items() if isinstance(value, str)}
        doc["pii_kid"] = self.active_key_id if doc["pii"] else None
        return doc

    def open_fields(self, doc: dict[str, Any], *, collection: str) -> dict[str, Any]:
        """The reverse of ``seal_fields``; a document written before sealing reads as it is."""
        for name, sealed in (doc.pop("pii", None) or {}).items():
            doc[name] = self.open(sealed, context=context(collection, doc["_id"], name))
        doc.pop("pii_kid", None)
        return doc

    def seal_items(self, doc: dict[str, Any], items: str, name: str, *, collection: str) -> None:
        """Seal the text ``name`` of every entry of the list ``doc[items]`` (comments, feedback...)."""
        for i, item in enumerate(doc.get(items) or []):
            if isinstance(item.get(name), str) and item[name]:
                item[name] = self.seal(item[name], context=context(collection, doc["_id"], f"{items}.{i}.{name}"))

    def open_items(self, doc: dict[str, Any], items: str, name: str, *, collection: str) -> None:
        """The reverse of ``seal_items``; entries written before sealing read as they are."""
        for i, item in enumerate(doc.get(items) or []):
            if isinstance(item.get(name), dict):
                item[name] = self.open(item[name], context=context(collection, doc["_id"], f"{items}.{i}.{name}"))

    def blind_index(self, kind: str, normalised: str) -> str:
        """A keyed hash of a normalised value: equal inputs match, the value cannot be read back."""
        return _hmac(self._blind_keys[0], kind, normalised)

    def blind_indexes(self, kind: str, normalised: str) -> list[str]:
        """The value's blind index under the active key and then under each previous one: what a
        lookup tries while a rotation is under way."""
        return [_hmac(key, kind, normalised) for key in self._blind_keys]


def _hmac(key: bytes, kind: str, normalised: str) -> str:
    return hmac.new(key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
