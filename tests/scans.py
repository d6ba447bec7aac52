"""Whole-table reads in the embedded store, counted by PostgreSQL itself.

FerretDB turns a filter it can push down (equality on a field) into a ``WHERE`` that a mirrored GIN
index serves, and anything else into a read of the whole table. PostgreSQL counts each such read in
``pg_stat_user_tables.seq_scan``; a hot path that scans shows up there however small the test data.
Counters are flushed by the server's backends within ten seconds of going idle, hence ``settled``.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from deploy.local import infra

FLUSH_S = 11.0  # PostgreSQL's backends report their counters at most ten seconds after going idle


def _embedded() -> infra.Postgres:
    if os.environ.get("CARECRM_EXTERNAL_STORE"):
        # Under CI a hot-path test that cannot count scans has shown nothing: it fails, never skips.
        message = "scan counts need the embedded store's PostgreSQL; run without MONGODB_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return infra.Postgres()


def seq_scans(database: str) -> dict[str, int]:
    """Whole-table reads so far per collection of ``database`` (FerretDB's catalogue left out)."""
    rows = infra.Postgres().psql(
        "SELECT m._jsonb->>'_id', s.seq_scan FROM pg_stat_user_tables s "
        f"JOIN \"{database}\"._ferretdb_database_metadata m ON m._jsonb->>'table' = s.relname "
        f"WHERE s.schemaname = '{database}'")
    return {name: int(count) for name, count in (line.split("|") for line in rows.splitlines() if line)}


async def settled(database: str) -> dict[str, int]:
    """The counts once the server has reported them; the event loop (and a service in it) runs on."""
    _embedded()
    await asyncio.sleep(FLUSH_S)
    return await asyncio.to_thread(seq_scans, database)


def scanned(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Collections read whole between two counts (a collection created meanwhile counts from 0)."""
    return {name: n - before.get(name, 0) for name, n in after.items() if n > before.get(name, 0)}
