"""A small time-bounded cache for report figures, keyed by the caller's key so that no key sees
what only another key may read. Concurrent misses of one entry share one computation.

Report routes read a whole period or population, which takes seconds at 100,000 customers: an entry
past its time may be served as it is while a computation in the background replaces it
(``stale_ok``), so that only the first request of a key ever waits for one."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger("console.cache")
MAX_ENTRIES = 256
#: An expired entry is served while it is younger than this many times its time to live.
STALE_FACTOR = 20


def key_id(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


class TtlCache:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._entries: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._running: dict[tuple[str, ...], asyncio.Future[Any]] = {}
        self._background: set[asyncio.Task[Any]] = set()

    async def get(self, key: tuple[str, ...], compute: Callable[[], Awaitable[Any]],
                  keep: Callable[[Any], bool] = lambda _: True, ttl_s: float | None = None,
                  stale_ok: bool = False) -> Any:
        """The cached value of ``key``, or ``compute()``'s, kept for ``ttl_s`` (default: the
        cache's) when ``keep(value)`` says so. With ``stale_ok``, an expired value not too old is
        returned at once and computed again in the background."""
        ttl = self.ttl_s if ttl_s is None else ttl_s
        now = self.clock()
        hit = self._entries.get(key)
        if hit and hit[0] > now:
            return hit[1]
        if stale_ok and hit and now - (hit[0] - ttl) < ttl * STALE_FACTOR:
            if key not in self._running:
                task = asyncio.create_task(self._compute(key, self._claim(key), compute, keep, ttl))
                self._background.add(task)
                task.add_done_callback(self._settled)
            return hit[1]
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)
        return await self._compute(key, self._claim(key), compute, keep, ttl)

    def _claim(self, key: tuple[str, ...]) -> asyncio.Future[Any]:
        """The future others wait on while ``key`` is computed, registered before any await."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        return future

    async def _compute(self, key: tuple[str, ...], future: asyncio.Future[Any],
                       compute: Callable[[], Awaitable[Any]], keep: Callable[[Any], bool], ttl: float) -> Any:
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
            now = self.clock()
            if len(self._entries) >= MAX_ENTRIES:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                while len(self._entries) >= MAX_ENTRIES:
                    self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (now + ttl, value)
        return value

    def _settled(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background_refresh_failed", error=type(task.exception()).__name__)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
