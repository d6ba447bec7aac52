"""The signed-in session, kept in an encrypted, signed, HttpOnly cookie with an expiry.

The cookie holds the API key, so it is encrypted as well as signed (Fernet: AES-CBC with an
HMAC-SHA256 and the time it was sealed); nothing is kept server-side, so a restart or a second
console process keeps everyone signed in. Forms carry a per-session CSRF token; the sign-in form,
before there is a session, one derived from a random pre-session cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

SESSION_COOKIE = "carecrm_session"
PRE_COOKIE = "carecrm_pre"
FLASH_COOKIE = "carecrm_flash"
LANG_COOKIE = "carecrm_lang"
CSRF_FIELD = "csrf_token"
FLASH_TTL_S = 120


@dataclass(frozen=True)
class Session:
    key: str
    scopes: frozenset[str]
    csrf: str
    expires: int
    probed: int
    #: Services that did not answer when the scopes were probed: their scopes are not known yet.
    unknown: tuple[str, ...] = field(default=())

    def can(self, *scopes: str) -> bool:
        return all(scope in self.scopes for scope in scopes)

    def payload(self) -> dict[str, Any]:
        return {"k": self.key, "s": sorted(self.scopes), "c": self.csrf, "e": self.expires, "p": self.probed,
                "u": list(self.unknown)}

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Session:
        return cls(key=str(data["k"]), scopes=frozenset(map(str, data["s"])), csrf=str(data["c"]),
                   expires=int(data["e"]), probed=int(data["p"]), unknown=tuple(map(str, data.get("u") or ())))

    @classmethod
    def new(cls, key: str, scopes: frozenset[str], unknown: tuple[str, ...], ttl_s: int) -> Session:
        now = int(time.time())
        return cls(key=key, scopes=scopes, csrf=secrets.token_urlsafe(32), expires=now + ttl_s, probed=now,
                   unknown=unknown)


class Codec:
    """Seals and opens cookie values with keys derived from the session secret."""

    def __init__(self, secret: str) -> None:
        digest = hashlib.sha256(b"carecrm-console/session\x00" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._mac = hashlib.sha256(b"carecrm-console/csrf\x00" + secret.encode()).digest()

    def seal(self, payload: dict[str, Any], *, at: int | None = None) -> str:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return self._fernet.encrypt_at_time(raw, int(time.time()) if at is None else at).decode()

    def open(self, token: str | None, ttl_s: int) -> dict[str, Any] | None:
        """The payload, or None for a forged, altered, foreign or expired value."""
        if not token or len(token) > 4096:
            return None
        try:
            data = json.loads(self._fernet.decrypt(token.encode(), ttl=ttl_s))
        except (InvalidToken, ValueError, TypeError):
            return None
        return data if isinstance(data, dict) else None

    # --- sessions ------------------------------------------------------------------------------

    def session(self, token: str | None, ttl_s: int) -> Session | None:
        data = self.open(token, ttl_s)
        if data is None:
            return None
        try:
            session = Session.from_payload(data)
        except (KeyError, TypeError, ValueError):
            return None
        return session if session.expires > time.time() else None

    def seal_session(self, session: Session) -> str:
        return self.seal(session.payload())

    # --- CSRF before sign-in -------------------------------------------------------------------

    def pre_token(self, pre_cookie: str) -> str:
        """The form token that matches a pre-session cookie (the cookie itself never is in a page)."""
        return hmac.new(self._mac, pre_cookie.encode(), hashlib.sha256).hexdigest()

    def pre_token_ok(self, pre_cookie: str | None, presented: str | None) -> bool:
        if not pre_cookie or not presented:
            return False
        return hmac.compare_digest(self.pre_token(pre_cookie), presented)


def csrf_ok(session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session.csrf, presented or "")
