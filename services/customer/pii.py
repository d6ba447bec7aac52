"""Field-level encryption of personal data (AES-GCM) and HMAC blind indexes for exact lookup.

Every sealed value carries the id of the key that sealed it, so keys can rotate while old values
stay readable. The associated data binds a ciphertext to its document and field: a value copied
into another customer's document does not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .settings import CustomerSettings, decode_key

_NONCE_BYTES = 12


class UnknownKey(LookupError):
    """A value sealed with a key the settings no longer hold."""


class PiiCipher:
    def __init__(self, keys: dict[str, bytes], active_key_id: str, blind_index_key: bytes) -> None:
        if active_key_id not in keys:
            raise ValueError("the active key id names no key")
        self._aead = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.active_key_id = active_key_id
        self._blind_key = blind_index_key

    @classmethod
    def from_settings(cls, settings: CustomerSettings) -> PiiCipher:
        keys = {key_id: decode_key(key.get_secret_value(), key_id) for key_id, key in settings.pii_keys.items()}
        return cls(keys, settings.pii_active_key_id,
                   decode_key(settings.blind_index_key.get_secret_value(), "blind index key"))

    def seal(self, value: str, *, context: str) -> dict[str, str]:
        """Encrypt ``value`` under the active key; ``context`` names the document and field."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead[self.active_key_id].encrypt(nonce, value.encode(), context.encode())
        return {"k": self.active_key_id, "n": _b64(nonce), "c": _b64(sealed)}

    def open(self, sealed: dict[str, Any], *, context: str) -> str:
        aead = self._aead.get(sealed["k"])
        if aead is None:
            raise UnknownKey(f"no key {sealed['k']!r} to open a stored value")
        try:
            return aead.decrypt(base64.b64decode(sealed["n"]), base64.b64decode(sealed["c"]),
                                context.encode()).decode()
        except InvalidTag:
            raise ValueError("a stored value failed authentication") from None

    def blind_index(self, kind: str, normalised: str) -> str:
        """A keyed hash of a normalised value: equal inputs match, the value cannot be read back."""
        return hmac.new(self._blind_key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
