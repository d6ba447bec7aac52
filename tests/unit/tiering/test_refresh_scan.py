"""A population refresh looks at every stored customer's standing, and lets the process run meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from services.tiering import domain, workflow as workflow_module
from services.tiering.metrics import Metrics
from services.tiering.policy import default_policy
from tests.unit.tiering.test_ownership import NOW, Store, workflow_on


async def test_a_refresh_scan_in_which_nobody_moves_still_lets_the_event_loop_turn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Few customers move at a refresh, so the scan seldom waits for a chunk: at 100,000 customers it
    # held the loop for seconds, and with it the consumers' heartbeats and every request.
    workflow = workflow_on(Store({}))
    workflow.policy = default_policy()
    standing = domain.standing(Metrics(), {}, ())
    workflow.standings = {f"C-{n}": standing for n in range(3 * workflow_module.SCAN_YIELD)}
    turns = 0
    seen: list[int] = []

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    def moves(*_: object) -> bool:
        seen.append(turns)
        return False

    monkeypatch.setattr(domain, "population_moves", moves)
    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        outcome = await workflow._reevaluate_all(workflow.policy, NOW, only_population=True)
    finally:
        task.cancel()
    assert outcome.changed_customers == 0 and len(seen) == len(workflow.standings)
    assert seen[-1] > seen[0]  # the loop turned while the scan ran
