"""A stored revision reads back as the state it was made of."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.tiering import domain
from services.tiering.classification import classify
from services.tiering.metrics import Entry, compute_metrics
from services.tiering.policy import default_policy
from services.tiering.repository import CustomerState, snapshot_from_doc, state_doc

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_a_revision_keeps_how_often_each_value_was_reached_so_ids_survive_a_restart() -> None:
    policy = default_policy()
    ledger = [Entry("p:a", "purchase", NOW - timedelta(days=2), 2_500_000, order_id="a")]
    metrics = compute_metrics(ledger, NOW, policy)
    snapshot, changes = domain.decide(domain.Snapshot(), classify(metrics, None, policy, NOW), metrics,
                                      None, policy, NOW, NOW)
    state = CustomerState("C-1")
    state.snapshot, state.metrics, state.rev = snapshot, metrics, 1
    read = snapshot_from_doc(state_doc(state, policy.version, NOW))
    assert read.entered == snapshot.entered and read.entered["value_tier:high:up"] == 1
    assert read == snapshot and changes
