"""Failed sign-ins per client address in a sliding window: past the limit, sign-in answers 429.

In memory: one console process guards its own door. Addresses are held only while they have recent
failures, and the table is bounded so that a flood of addresses cannot grow it without end.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

MAX_ADDRESSES = 100_000


class LoginLimiter:
    def __init__(self, failures: int, window_s: float) -> None:
        self.failures = failures
        self.window_s = window_s
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._seen.get(address)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._seen[address]
        return times

    def retry_after(self, address: str, now: float | None = None) -> int:
        """Seconds until ``address`` may try again; 0 when it may now."""
        now = time.monotonic() if now is None else now
        times = self._recent(address, now)
        if len(times) < self.failures:
            return 0
        return max(1, int(times[-self.failures] + self.window_s - now + 0.999))

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        times = self._recent(address, now)
        if address not in self._seen:
            self._seen[address] = times
        times.append(now)
        self._seen.move_to_end(address)
        while len(self._seen) > MAX_ADDRESSES:
            self._seen.popitem(last=False)

