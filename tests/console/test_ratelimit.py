"""Failed sign-ins per address in a sliding window."""

from __future__ import annotations

from console.ratelimit import LoginLimiter


def test_the_sixth_attempt_within_a_minute_waits_and_the_window_slides() -> None:
    limiter = LoginLimiter(failures=5, window_s=60)
    for second in range(5):
        assert limiter.retry_after("10.0.0.1", now=100 + second) == 0
        limiter.failed("10.0.0.1", now=100 + second)
    assert limiter.retry_after("10.0.0.1", now=105) == 55
    assert limiter.retry_after("10.0.0.2", now=105) == 0  # another address is not held back
    assert limiter.retry_after("10.0.0.1", now=160.5) == 0  # the first failure has left the window
    limiter.failed("10.0.0.1", now=160.6)  # five again within the last minute
    assert limiter.retry_after("10.0.0.1", now=160.6) == 1


def test_old_addresses_are_forgotten() -> None:
    limiter = LoginLimiter(failures=2, window_s=10)
    limiter.failed("a", now=0)
    assert limiter.retry_after("a", now=11) == 0
    assert "a" not in limiter._seen  # noqa: SLF001 - the table does not keep what no longer counts
