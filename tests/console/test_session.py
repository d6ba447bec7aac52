"""The session cookie: sealed and opened with the secret; anything forged, altered, foreign or
expired opens as nothing. The CSRF tokens: per session, and before sign-in tied to a cookie."""

from __future__ import annotations

import time

from console.session import Codec, Session, csrf_ok

SECRET = "s" * 48


def session(**changes: object) -> Session:
    now = int(time.time())
    values = {"key": "ck_key", "scopes": frozenset({"customers:read"}), "csrf": "token", "expires": now + 60,
              "probed": now, "unknown": ("tiering",)}
    return Session(**{**values, **changes})  # type: ignore[arg-type]


def test_a_sealed_session_opens_as_itself_and_does_not_show_the_key() -> None:
    codec = Codec(SECRET)
    sealed = codec.seal_session(session())
    assert "ck_key" not in sealed
    assert codec.session(sealed, ttl_s=3600) == session(expires=session().expires, probed=session().probed)


def test_forged_altered_foreign_and_expired_cookies_open_as_nothing() -> None:
    codec = Codec(SECRET)
    sealed = codec.seal_session(session())
    altered = sealed[:20] + ("A" if sealed[20] != "A" else "B") + sealed[21:]
    assert codec.session(altered, 3600) is None
    assert codec.session("gAAAAAB" + "x" * 100, 3600) is None
    assert codec.session("", 3600) is None
    assert codec.session("x" * 5000, 3600) is None
    assert codec.session(Codec("t" * 48).seal_session(session()), 3600) is None
    # Too old for the time to live, and past its own expiry: both refused.
    assert codec.session(codec.seal(session().payload(), at=int(time.time()) - 7200), 3600) is None
    assert codec.session(codec.seal_session(session(expires=int(time.time()) - 1)), 3600) is None


def test_csrf_tokens() -> None:
    codec = Codec(SECRET)
    assert csrf_ok(session(), "token")
    assert not csrf_ok(session(), "other") and not csrf_ok(session(), None) and not csrf_ok(session(), "")
    token = codec.pre_token("cookie-value")
    assert token != "cookie-value"
    assert codec.pre_token_ok("cookie-value", token)
    assert not codec.pre_token_ok("another-cookie", token)
    assert not codec.pre_token_ok(None, token) and not codec.pre_token_ok("cookie-value", None)
    assert not Codec("t" * 48).pre_token_ok("cookie-value", token)
