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
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from .settings import ApiKey

_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key issued by the operator.")
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


def require(*scopes: str):  # noqa: ANN201 - a FastAPI dependency
    """Dependency: 401 without a valid key, 403 when the key lacks one of ``scopes``."""

    async def dependency(request: Request, presented: Annotated[str | None, Security(_header)]) -> ApiKey:
        key = authenticate(request.app.state.settings.api_keys, presented)
        if key is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or unknown API key",
                                headers={"WWW-Authenticate": "X-API-Key"})
        missing = set(scopes) - key.scopes
        if missing:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"API key lacks scope {', '.join(sorted(missing))}")
        request.state.api_key = key
        return key

    return Depends(dependency)


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
