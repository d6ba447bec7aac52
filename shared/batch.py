"""How every service applies a batch of consumed events: per customer, side by side.

A batch handler groups its events by subject (the customer, the topics' key), applies each
customer's events in the order they were read, many customers at a time (what a record at a time
waits for is the store's latency, not its work), writes what many events share in one command, and
returns only once every effect is written and published; the runtime then commits the offsets. A
batch read again (a crash, a broker restart, a store outage) is applied again to the same effect,
because every write is keyed by a natural id.

What goes wrong with one event is that event's alone:
- ``Rejected``: a well-formed event that breaks a rule goes to the DLQ with its reason;
- an error that is not the event's fault (``TRANSIENT_ERRORS``) fails the batch, which is read again;
- any other error fails the batch too, until the same event has failed ``max_attempts`` times: then
  it is parked in the DLQ as ``processing_failed`` and the rest of its batch goes on.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, Generic, TypeVar

from aiokafka import ConsumerRebalanceListener

from .contract import CloudEvent
from .kafka import TRANSIENT_ERRORS, Rejected, by_subject

E = TypeVar("E", bound=CloudEvent)
K = TypeVar("K")
V = TypeVar("V")

#: Called with an event of the batch that must go to the DLQ; the rest of the batch carries on.
Reject = Callable[[CloudEvent, Rejected], Awaitable[None]]


class BatchRunner:
    def __init__(self, *, concurrency: int = 64, max_attempts: int = 5) -> None:
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self._failures: dict[str, int] = {}

    async def per_event(self, events: Sequence[E], apply: Callable[[E], Awaitable[None]], reject: Reject) -> None:
        """``apply`` each event: a customer's events in order, customers side by side."""
        async def run(own: list[E]) -> None:
            for event in own:
                await self.guarded(event, apply(event), reject)

        await self.bounded(run(own) for own in by_subject(events).values())

    async def per_customer(self, events: Sequence[E], apply: Callable[[str, list[E]], Awaitable[None]],
                           reject: Reject) -> None:
        """``apply`` each customer's events of the batch at once (in the order read), customers side
        by side. A group that is rejected, or keeps failing, is applied again one event at a time,
        so that only the event at fault goes to the DLQ."""
        async def run(customer: str, own: list[E]) -> None:
            try:
                await apply(customer, own)
                return
            except TRANSIENT_ERRORS:
                raise
            except Rejected as exc:
                if len(own) == 1:
                    await reject(own[0], exc)
                    return
            except Exception:
                if not self._gave_up(own[0]):
                    raise
            for event in own:
                try:
                    await apply(customer, [event])
                except Rejected as exc:
                    await reject(event, exc)
                except TRANSIENT_ERRORS:
                    raise
                except Exception as exc:
                    await reject(event, Rejected("processing_failed", f"{type(exc).__name__}: {str(exc)[:300]}"))

        await self.bounded(run(customer, own) for customer, own in by_subject(events).items())

    async def guarded(self, event: CloudEvent, work: Awaitable[None], reject: Reject) -> None:
        """Run ``work`` for ``event`` under the rules of the module's note."""
        try:
            await work
        except Rejected as exc:
            await reject(event, exc)
        except TRANSIENT_ERRORS:
            raise  # not the event's fault: the batch is read again
        except Exception as exc:
            if not self._gave_up(event):
                raise
            await reject(event, Rejected("processing_failed", f"{type(exc).__name__}: {str(exc)[:300]}"))

    def _gave_up(self, event: CloudEvent) -> bool:
        """Whether ``event`` failed ``max_attempts`` times (each failure reads its batch again)."""
        attempts = self._failures.get(event.id, 0) + 1
        if len(self._failures) > 10_000:
            self._failures.clear()
        if attempts >= self.max_attempts:
            self._failures.pop(event.id, None)
            return True
        self._failures[event.id] = attempts
        return False

    async def bounded(self, work: Iterable[Coroutine[Any, Any, None]]) -> None:
        """Run ``work`` at most ``concurrency`` at a time; every part ends before an error is raised,
        so a batch read again never overlaps the attempt before it."""
        gate = asyncio.Semaphore(self.concurrency)

        async def gated(coro: Coroutine[Any, Any, None]) -> None:
            async with gate:
                await coro

        results = await asyncio.gather(*(gated(coro) for coro in work), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


class Remembered(Generic[K, V]):
    """What this process last wrote for a key, so that the next event of the key needs no read.

    Only for values this process alone writes (one consumer owns a customer's partition; the API
    writes through the same objects): a value another writer may change is read, not remembered.
    Bounded: the least recently used go first."""

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self._values: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._values.get(key)
        if value is not None:
            self._values.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        if len(self._values) > self.size:
            self._values.popitem(last=False)

    def forget(self, key: K) -> None:
        self._values.pop(key, None)

    def clear(self) -> None:
        self._values.clear()


class PartitionsGained(ConsumerRebalanceListener):  # type: ignore[misc]
    """Calls ``gained`` when the consumer is given partitions it did not hold: what this process
    remembers of those customers may be stale, since another instance may have written them."""

    def __init__(self) -> None:
        self.held: set[Any] = set()

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        gained = set(assigned) - self.held
        self.held = set(assigned)
        if gained:
            await self.gained()

    async def gained(self) -> None:
        raise NotImplementedError


class ForgetOnRebalance(PartitionsGained):
    """Clears what a subscriber remembered when its consumer gains partitions."""

    def __init__(self, *remembered: Remembered[Any, Any]) -> None:
        super().__init__()
        self.remembered = remembered

    async def gained(self) -> None:
        for values in self.remembered:
            values.clear()
