"""MongoDB access of the complaints service."""

from __future__ import annotations

from shared.mongo import Index, Store

INDEXES: list[Index] = []


class Repository:
    def __init__(self, store: Store) -> None:
        self.store = store
