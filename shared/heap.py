"""The service process's garbage collector, kept off the path of the messages.

A service holds a long-lived working set (tiering: each cached customer's ledger, snapshot and
metrics, a few dozen objects a customer). CPython's full collection walks every tracked object and
runs whenever a quarter as many again have survived since the last one: at 10,000 customers in
memory that was a 90-150 ms stop every two seconds, finding nothing to free, and every batch in the
process waited for it. So once a second what has survived is moved out of the collector's sight
(``gc.freeze``) and a collection walks only what is newer. Objects freed by their reference count
leave the frozen set as always; what a frozen object cannot get rid of is a reference cycle, so once
an hour everything goes back for one full collection.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge

FREEZE_EVERY_S = 1.0
FULL_COLLECTION_EVERY_S = 3600.0


class Heap:
    def __init__(self, registry: CollectorRegistry | None = None, *,
                 monotonic: Callable[[], float] = time.monotonic,
                 full_collection_every_s: float = FULL_COLLECTION_EVERY_S) -> None:
        self.monotonic = monotonic
        self.full_collection_every_s = full_collection_every_s
        self.last_full = monotonic()
        if registry is not None:
            Gauge("carecrm_gc_frozen_objects", "Objects kept out of the garbage collector's generations",
                  registry=registry).set_function(gc.get_freeze_count)

    def settle(self) -> None:
        """Freeze what lives now; once ``full_collection_every_s`` has passed, collect everything first."""
        now = self.monotonic()
        if now - self.last_full >= self.full_collection_every_s:
            gc.unfreeze()
            gc.collect()
            self.last_full = now
        gc.freeze()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FREEZE_EVERY_S)
            self.settle()
