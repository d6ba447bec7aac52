"""A small time-bounded cache for report figures, keyed by the caller's key so that no key sees
what only another key may read. Concurrent misses of one entry share one computation."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

MAX_ENTRIES = 256


def key_id(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


class TtlCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._running: dict[tuple[str, ...], asyncio.Future[Any]] = {}

    async def get(self, key: tuple[str, ...], compute: Callable[[], Awaitable[Any]],
                  keep: Callable[[Any], bool] = lambda _: True, ttl_s: float | None = None) -> Any:
        """The cached value of ``key``, or ``compute()``'s, kept for ``ttl_s`` (default: the
        cache's) when ``keep(value)`` says so."""
        ttl = self.ttl_s if ttl_s is None else ttl_s
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit and hit[0] > now:
            return hit[1]
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            value = await compute()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            self._running.pop(key, None)
        future.set_result(value)
        if ttl > 0 and keep(value):
            if len(self._entries) >= MAX_ENTRIES:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                while len(self._entries) >= MAX_ENTRIES:
                    self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (now + ttl, value)
        return value
