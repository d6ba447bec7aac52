"""An event-time clock's watermark, kept in the service's own store.

Before its first event an ``EventTimeClock`` reads wall time. A service restarted on replayed data
would then judge every stored customer as of today until a new event arrived: its schedulers would
find a whole population churned, overdue or due for a message, and announce it. The watermark is
saved a few seconds apart (``$max``, so it never goes back) and restored before the broker and the
schedulers start, so that a restart resumes on the data's own time.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from .clock import EventTimeClock
from .mongo import Store

COLLECTION = "clock"
KEY = "event_time"
SAVE_EVERY_S = 5.0


async def restore(store: Store, clock: EventTimeClock) -> datetime | None:
    """The stored watermark, observed by ``clock``; None when there is none."""
    doc = await store[COLLECTION].find_one({"_id": KEY})
    if doc is None:
        return None
    clock.observe(doc["at"])
    return doc["at"]


async def save(store: Store, clock: EventTimeClock) -> None:
    if clock.watermark is not None:
        await store[COLLECTION].update_one({"_id": KEY}, {"$max": {"at": clock.watermark}}, upsert=True)


async def keep(store: Store, clock: EventTimeClock, every_s: float = SAVE_EVERY_S) -> None:
    """Save the watermark whenever it moved, every ``every_s`` seconds, for the life of the service."""
    saved = None  # the first round saves: what moved before this task first ran is not lost
    while True:
        await asyncio.sleep(every_s)
        if clock.watermark != saved:
            await save(store, clock)
            saved = clock.watermark
