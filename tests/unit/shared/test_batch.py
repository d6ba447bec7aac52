"""A batch runs per customer: each customer's events in order, customers side by side; one event's
fault is its own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from pymongo.errors import AutoReconnect

from shared.batch import BatchRunner, Remembered
from shared.contract import CloudEvent
from shared.kafka import Rejected

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def event(customer: str, n: int) -> CloudEvent:
    return CloudEvent(id=f"{customer}-{n}", source="tests", type="test.event", subject=customer, time=AT, data={})


async def test_a_customers_events_keep_their_order_while_customers_go_side_by_side() -> None:
    events = [event(c, n) for n in range(3) for c in ("a", "b")]
    running, most, seen = 0, 0, []

    async def apply(e: CloudEvent) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        seen.append(e.id)
        running -= 1

    await BatchRunner().per_event(events, apply, reject=None)  # type: ignore[arg-type]
    assert [i for i in seen if i.startswith("a")] == ["a-0", "a-1", "a-2"]
    assert most == 2


async def test_a_rejected_event_goes_to_the_dead_letters_and_the_rest_of_the_batch_is_applied() -> None:
    applied, parked = [], []

    async def apply(e: CloudEvent) -> None:
        if e.id == "a-1":
            raise Rejected("unknown_customer", "no such customer")
        applied.append(e.id)

    async def reject(e: CloudEvent, exc: Rejected) -> None:
        parked.append((e.id, exc.code))

    await BatchRunner().per_event([event("a", n) for n in range(3)], apply, reject)
    assert (applied, parked) == (["a-0", "a-2"], [("a-1", "unknown_customer")])


async def test_a_transient_error_fails_the_batch_and_a_failing_event_is_parked_after_its_attempts() -> None:
    runner, parked = BatchRunner(max_attempts=3), []

    async def reject(e: CloudEvent, exc: Rejected) -> None:
        parked.append((e.id, exc.code))

    async def store_away(e: CloudEvent) -> None:
        raise AutoReconnect("store away")

    for _ in range(5):
        with pytest.raises(AutoReconnect):
            await runner.per_event([event("a", 0)], store_away, reject)
    assert parked == []  # the store's fault: never parked, read again

    async def broken(e: CloudEvent) -> None:
        raise ValueError("cannot use it")

    for _ in range(2):
        with pytest.raises(ValueError):
            await runner.per_event([event("a", 0)], broken, reject)
    await runner.per_event([event("a", 0)], broken, reject)
    assert parked == [("a-0", "processing_failed")]


async def test_a_customers_group_that_keeps_failing_is_applied_again_event_by_event() -> None:
    runner, parked, applied = BatchRunner(max_attempts=2), [], []
    group = [event("a", n) for n in range(3)]

    async def reject(e: CloudEvent, exc: Rejected) -> None:
        parked.append((e.id, exc.code))

    async def apply(customer: str, own: list[CloudEvent]) -> None:
        if any(e.id == "a-1" for e in own):
            raise ValueError("cannot use a-1")
        applied.extend(e.id for e in own)

    with pytest.raises(ValueError):
        await runner.per_customer(group, apply, reject)
    await runner.per_customer(group, apply, reject)
    assert (applied, parked) == (["a-0", "a-2"], [("a-1", "processing_failed")])


def test_remembered_values_are_bounded_least_recently_used_first() -> None:
    remembered: Remembered[str, int] = Remembered(size=2)
    remembered.put("a", 1)
    remembered.put("b", 2)
    assert remembered.get("a") == 1
    remembered.put("c", 3)
    assert (remembered.get("a"), remembered.get("b"), remembered.get("c")) == (1, None, 3)
    remembered.forget("a")
    assert remembered.get("a") is None
