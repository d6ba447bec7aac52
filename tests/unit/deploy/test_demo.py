"""The demo's replayed data: the dataset mapped to the contract, with the seeded complaints and interactions."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

from deploy.demo import synthetic_events
from deploy.replay import Row

T0 = datetime(2011, 3, 1, 10, 0, tzinfo=UTC)


def test_rows_that_break_the_contract_are_counted_not_published() -> None:
    rows = [Row("C1", "536365", T0, Decimal("12.50"), "GBP", refund=False, country="GB"),
            Row("C1", "536366", T0, Decimal("0.00"), "GBP", refund=False, country="GB")]
    rejected: Counter[str] = Counter()
    events = synthetic_events(rows, 1, rejected)
    assert sum(e.type == "order.purchase.completed" for e in events) == 1
    assert rejected == {"total_amount: amount must be greater than 0": 1}

