"""What a key may do, learnt by asking the services, not by a list of our own.

Each probe is a request its service refuses before it touches anything: a body or a query that
fails validation. A service checks the key first (401 unknown key, 403 naming the missing scopes),
so the answer tells whether the key holds the probe's scopes, and nothing is read or written.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from .upstream import Upstream

_BAD_ID = "%20"  # a path segment no customer id matches: the route answers 422 after the key check
_MISSING = re.compile(r"lacks scopes? (.+)$")


@dataclass(frozen=True)
class Probe:
    service: str
    method: str
    path: str
    scopes: frozenset[str]
    params: dict[str, Any] | None = None
    json: Any = None


PROBES: tuple[Probe, ...] = (
    Probe("customer", "GET", "/customers/lookup", frozenset({"customers:read", "pii:read"})),
    Probe("customer", "POST", "/customers", frozenset({"customers:write"}), json=[]),
    Probe("tiering", "GET", f"/customers/{_BAD_ID}/classification", frozenset({"tiers:read"})),
    Probe("tiering", "PUT", "/customers/probe/overrides/value_tier", frozenset({"tiers:write"}), json=[]),
    Probe("tiering", "POST", "/policy", frozenset({"policy:write"}), json=[]),
    Probe("complaints", "GET", "/complaints", frozenset({"complaints:read"}), params={"limit": 0}),
    Probe("complaints", "POST", "/complaints", frozenset({"complaints:write"}), json=[]),
    Probe("notifications", "GET", "/suppressions", frozenset({"notifications:read"}), params={"limit": 0}),
    Probe("notifications", "POST", "/suppressions", frozenset({"notifications:write"}), json=[]),
)


@dataclass(frozen=True)
class Probed:
    valid: bool  # False when a service said the key is unknown (401)
    scopes: frozenset[str]
    unknown: tuple[str, ...]  # services that gave no usable answer


def _missing(detail: Any) -> set[str]:
    text = detail.get("detail") if isinstance(detail, dict) else None
    match = _MISSING.search(text) if isinstance(text, str) else None
    return {s.strip() for s in match.group(1).split(",")} if match else set()


async def probe(upstream: Upstream, key: str, services: tuple[str, ...] | None = None) -> Probed:
    """Ask every service (or only ``services``) which of its scopes ``key`` holds, all at once."""
    chosen = [p for p in PROBES if services is None or p.service in services]
    replies = await asyncio.gather(*(upstream.call(key, p.service, p.method, p.path, params=p.params, json=p.json)
                                     for p in chosen))
    scopes: set[str] = set()
    unknown: set[str] = set()
    valid = True
    for p, reply in zip(chosen, replies, strict=True):
        if reply.unavailable:
            unknown.add(p.service)
        elif reply.status == 401:
            valid = False
        elif reply.status == 403:
            missing = _missing(reply.body)
            # An unreadable refusal grants nothing: a page that is not offered is the safe mistake.
            scopes |= (p.scopes - missing) if missing else set()
        else:
            scopes |= p.scopes
    return Probed(valid, frozenset(scopes), tuple(sorted(unknown)))
