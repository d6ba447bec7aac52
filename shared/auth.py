"""API keys with scopes for every HTTP API. Settings hold only SHA-256 hashes of the keys.

Keys are 256-bit random tokens, so a plain SHA-256 is enough to store them (no password hashing
needed) and comparison is constant-time.

    python -m shared.auth new-key --name ops --scopes customers:read,customers:write
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
import sys
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from .settings import ApiKey

HEADER = "X-API-Key"
_header = APIKeyHeader(name=HEADER, auto_error=False, description="An API key issued by the operator.")
KEY_PREFIX = "ck_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def authenticate(keys: tuple[ApiKey, ...], presented: str | None) -> ApiKey | None:
    if not presented:
        return None
    digest = hashlib.sha256(presented.encode()).hexdigest()
    found = None
    for key in keys:  # compare against all, so timing does not tell which one matched
        if hmac.compare_digest(key.sha256, digest):
            found = key
    return found


def _authorise(request: Request, presented: str | None, scopes: Iterable[str]) -> ApiKey:
    key = authenticate(request.app.state.settings.api_keys, presented)
    if key is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or unknown API key",
                            headers={"WWW-Authenticate": "X-API-Key"})
    missing = set(scopes) - key.scopes
    if missing:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"API key lacks scope {', '.join(sorted(missing))}")
    return key


def require(*scopes: str):  # noqa: ANN201 - a FastAPI dependency
    """Dependency: 401 without a valid key, 403 when the key lacks one of ``scopes``."""

    async def dependency(request: Request, presented: Annotated[str | None, Security(_header)]) -> ApiKey:
        key = _authorise(request, presented, scopes)
        request.state.api_key = key
        return key

    dependency.required_scopes = frozenset(scopes)  # type: ignore[attr-defined] - read by refusal()
    return Depends(dependency)


def _required_scopes(dependant: Any) -> set[str] | None:
    """The scopes the ``require`` dependencies of a route ask for; None for a public route."""
    found: set[str] | None = None
    for inner in getattr(dependant, "dependencies", ()):
        for part in (getattr(inner.call, "required_scopes", None), _required_scopes(inner)):
            if part is not None:
                found = (found or set()) | part
    return found


def refusal(request: Request) -> HTTPException | None:
    """The 401 or 403 the matched route of ``request`` owes its caller, if any.

    FastAPI decodes a JSON body before it runs any dependency, so an error about the body would
    otherwise reach a caller without a key; the error handlers ask this first.
    """
    scopes = _required_scopes(getattr(request.scope.get("route"), "dependant", None))
    if scopes is None:
        return None
    try:
        _authorise(request, request.headers.get(HEADER), scopes)
    except HTTPException as exc:
        return exc
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.auth")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("new-key", help="make a key; print it and its settings entry")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", required=True, help="comma-separated, e.g. customers:read,pii:read")
    args = parser.parse_args(argv)
    key = new_key()
    entry = ApiKey.from_plaintext(args.name, key, {s.strip() for s in args.scopes.split(",") if s.strip()})
    print(f"key (give it to the client, it is not stored): {key}")
    print("API_KEYS entry:", json.dumps([entry.model_dump(mode="json")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
