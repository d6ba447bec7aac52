"""Learning a key's scopes from the services' own answers (401, 403 naming what is missing)."""

from __future__ import annotations

import re

import httpx

from console.scopes import PROBES, probe
from console.upstream import Upstream

URLS = {name: f"http://{name}" for name in ("customer", "tiering", "complaints", "notifications")}


def services(granted: set[str], *, known: bool = True, down: str | None = None) -> httpx.MockTransport:
    """Services that check keys as shared/auth.py does, for one key with ``granted`` scopes."""
    def answer(request: httpx.Request) -> httpx.Response:
        if down and request.url.host == down:
            raise httpx.ConnectError("refused", request=request)
        if not known:
            return httpx.Response(401, json={"detail": "missing or unknown API key"})
        needed = next(p.scopes for p in PROBES if p.service == request.url.host and p.method == request.method
                      and re.sub("%20", " ", p.path) == re.sub("%20", " ", request.url.path))
        missing = needed - granted
        if missing:
            return httpx.Response(403, json={"detail": f"API key lacks scope {', '.join(sorted(missing))}"})
        return httpx.Response(422, json={"detail": []})
    return httpx.MockTransport(answer)


async def test_every_scope_of_the_key_is_found() -> None:
    everything = {s for p in PROBES for s in p.scopes}
    found = await probe(Upstream(URLS, 5, transport=services(everything)), "k")
    assert found.valid and found.scopes == everything and not found.unknown


async def test_a_refusal_naming_one_missing_scope_grants_the_others() -> None:
    found = await probe(Upstream(URLS, 5, transport=services({"customers:read", "tiers:read"})), "k")
    assert found.scopes == {"customers:read", "tiers:read"}  # pii:read named missing on the same probe


async def test_an_unknown_key_and_a_service_that_does_not_answer() -> None:
    assert not (await probe(Upstream(URLS, 5, transport=services(set(), known=False)), "k")).valid
    found = await probe(Upstream(URLS, 5, transport=services({"complaints:read", "tiers:read"}, down="tiering")),
                        "k")
    assert found.valid and found.unknown == ("tiering",) and found.scopes == {"complaints:read"}
