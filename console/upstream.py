"""The console's only way out: the four services' HTTP APIs, called with the signed-in user's key.

Every call returns a ``Reply`` instead of raising, so that a page can show what one service said (or
that it is not answering) beside what the others gave.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

log = structlog.get_logger("console.upstream")
HEADER = "X-API-Key"  # as shared/auth.py defines it for every service


@dataclass(frozen=True)
class Reply:
    service: str
    status: int  # 0 when the service did not answer
    body: Any = None
    down: str | None = None  # why there is no answer: "unreachable", "timeout"

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def unavailable(self) -> bool:
        """No usable answer: not reachable, timed out or failing on its side."""
        return self.down is not None or self.status >= 500

    def detail(self) -> str:
        """The service's reason for refusing, as text (FastAPI's ``detail`` in its three shapes)."""
        body = self.body
        detail = body.get("detail") if isinstance(body, dict) else body
        if isinstance(detail, dict):
            text = str(detail.get("message") or detail.get("error") or detail)
            allowed = detail.get("allowed_transitions")
            if isinstance(allowed, list):
                text += f" (allowed: {', '.join(map(str, allowed)) or '-'})"
            return text
        if isinstance(detail, list):
            parts = []
            for item in detail:
                if isinstance(item, dict):
                    loc = item.get("loc") or []
                    where = str(loc[-1]) if loc else ""
                    parts.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", "")))
            return "; ".join(parts) or "invalid request"
        if detail is None:
            return self.down or f"HTTP {self.status}"
        return str(detail)


class Upstream:
    """One pooled client for all services; ``call`` never raises for a service's trouble."""

    def __init__(self, urls: dict[str, str], timeout: float, transport: httpx.AsyncBaseTransport | None = None):
        self.urls = urls
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
            transport=transport, follow_redirects=False)

    async def close(self) -> None:
        await self.client.aclose()

    async def call(self, key: str, service: str, method: str, path: str, *, params: Any = None,
                   json: Any = None, timeout: float | None = None) -> Reply:
        started = time.perf_counter()
        extra = {"timeout": httpx.Timeout(timeout, connect=3.0)} if timeout else {}
        try:
            response = await self.client.request(method, self.urls[service] + path, params=params, json=json,
                                                 headers={HEADER: key}, **extra)
        except httpx.TimeoutException:
            return self._failed(service, method, path, "timeout", started)
        except httpx.TransportError:
            return self._failed(service, method, path, "unreachable", started)
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        if response.status_code >= 500:
            # The path only: queries carry phone numbers and e-mail addresses.
            log.warning("service_error", service=service, method=method, path=path, status=response.status_code)
        return Reply(service, response.status_code, body)

    def _failed(self, service: str, method: str, path: str, why: str, started: float) -> Reply:
        log.warning("service_not_answering", service=service, method=method, path=path, why=why,
                    ms=round((time.perf_counter() - started) * 1000))
        return Reply(service, 0, None, why)

    async def get(self, key: str, service: str, path: str, **params: Any) -> Reply:
        clean = {k: v for k, v in params.items() if v not in (None, "")}
        return await self.call(key, service, "GET", path, params=clean or None)

    async def health(self) -> dict[str, bool]:
        async def one(name: str, url: str) -> tuple[str, bool]:
            try:
                response = await self.client.get(url + "/health", timeout=2.0)
                return name, response.status_code == 200
            except httpx.HTTPError:
                return name, False

        return dict(await asyncio.gather(*(one(n, u) for n, u in self.urls.items())))
