"""The report cache: one computation for concurrent misses; an expired entry served at once while
the next one is computed in the background; failures and incomplete values never kept."""

from __future__ import annotations

import asyncio

import pytest

from console import cache as cache_module
from console.cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def counter(delay: float = 0.0) -> tuple[list[int], object]:
    calls: list[int] = []

    async def compute() -> int:
        calls.append(len(calls) + 1)
        await asyncio.sleep(delay)
        return len(calls)
    return calls, compute


async def test_concurrent_misses_share_one_computation(clock: Clock) -> None:
    cache = TtlCache(30, clock)
    calls, compute = counter(0.05)
    values = await asyncio.gather(*(cache.get(("k",), compute) for _ in range(5)))  # type: ignore[arg-type]
    assert values == [1] * 5 and calls == [1]


async def test_an_expired_entry_is_computed_again_before_answering_without_stale_ok(clock: Clock) -> None:
    cache = TtlCache(30, clock)
    calls, compute = counter()
    assert await cache.get(("k",), compute) == 1  # type: ignore[arg-type]
    clock.now += 31
    assert await cache.get(("k",), compute) == 2  # type: ignore[arg-type]


async def test_stale_ok_answers_with_the_old_value_and_refreshes_in_the_background(clock: Clock) -> None:
    cache = TtlCache(30, clock)
    calls, compute = counter(0.05)
    assert await cache.get(("k",), compute, stale_ok=True) == 1  # type: ignore[arg-type]  # nothing yet: waits
    clock.now += 31
    answers = await asyncio.gather(*(cache.get(("k",), compute, stale_ok=True) for _ in range(3)))  # type: ignore[arg-type]
    assert answers == [1, 1, 1]
    assert calls == [1, 2]  # one refresh for the three stale answers
    await asyncio.sleep(0.1)
    assert await cache.get(("k",), compute, stale_ok=True) == 2  # type: ignore[arg-type]
    assert calls == [1, 2]
    await cache.close()


async def test_a_value_far_past_its_time_is_not_served_stale(clock: Clock) -> None:
    cache = TtlCache(30, clock)
    calls, compute = counter()
    await cache.get(("k",), compute, stale_ok=True)  # type: ignore[arg-type]
    clock.now += 30 * cache_module.STALE_FACTOR + 1
    assert await cache.get(("k",), compute, stale_ok=True) == 2  # type: ignore[arg-type]


async def test_incomplete_values_and_failures_are_not_kept(clock: Clock) -> None:
    cache = TtlCache(30, clock)
    calls, compute = counter()
    assert await cache.get(("k",), compute, keep=lambda v: False) == 1  # type: ignore[arg-type]
    assert await cache.get(("k",), compute, keep=lambda v: False) == 2  # type: ignore[arg-type]

    async def broken() -> int:
        raise RuntimeError("down")
    with pytest.raises(RuntimeError):
        await cache.get(("other",), broken)
    assert await cache.get(("other",), compute) == 3  # type: ignore[arg-type]


async def test_a_failed_background_refresh_keeps_the_old_value(clock: Clock) -> None:
    cache = TtlCache(30, clock)
    _, compute = counter()
    assert await cache.get(("k",), compute, stale_ok=True) == 1  # type: ignore[arg-type]

    async def broken() -> int:
        raise RuntimeError("down")
    clock.now += 31
    assert await cache.get(("k",), broken, stale_ok=True) == 1
    await asyncio.sleep(0.01)
    assert await cache.get(("k",), broken, stale_ok=True) == 1
    await cache.close()
