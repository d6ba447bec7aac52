"""Tiering builds its outbound events without validation, for speed; these tests validate them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from prometheus_client import CollectorRegistry

from services.tiering import domain, outbound
from services.tiering.classification import classify
from services.tiering.metrics import Entry, add_entry, compute_metrics, entry_for
from services.tiering.workflow import Workflow
from services.tiering.policy import default_policy
from services.tiering.repository import CustomerState, history_doc
from services.tiering.settings import TieringSettings
from shared.clock import FixedClock
from shared.contract import CustomerClassification, CustomerTierChanged, parse_event
from shared.kafka import OutboundRecord
from tests.helpers import envelope

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def parsed(record: OutboundRecord) -> object:
    return parse_event(record.value, record.headers, key=record.key)


def workflow_with_customer() -> tuple[Workflow, CustomerState, list[domain.Change]]:
    workflow = Workflow(TieringSettings(), repo=None, clock=FixedClock(NOW), registry=CollectorRegistry(),  # type: ignore[arg-type]
                        publisher=None)
    workflow.policy = default_policy()
    state = CustomerState("C-outbound-1")
    for n, days in enumerate((200, 100, 40, 3)):
        add_entry(state.ledger, Entry(f"p:o{n}", "purchase", NOW - timedelta(days=days), 90_000_00,
                                             order_id=f"o{n}"))
    state.metrics = compute_metrics(state.ledger.values(), NOW, workflow.policy)
    targets = classify(state.metrics, None, workflow.policy, NOW)
    state.snapshot, changes = domain.decide(domain.Snapshot(), targets, state.metrics, None, workflow.policy, NOW, NOW)
    state.rev = 1
    return workflow, state, changes


def test_every_tier_change_tiering_builds_passes_the_contract_it_is_published_under() -> None:
    workflow, state, changes = workflow_with_customer()
    metrics = outbound.tier_metrics(workflow.policy, None, state.metrics, NOW)
    assert changes
    for change in changes:
        record = outbound.change_event(workflow.policy, state.customer_id, change.event_id(state.customer_id),
                                       change, metrics, bulk=False, cause=None)
        event = parsed(record)
        assert isinstance(event, CustomerTierChanged) and record.topic == CustomerTierChanged.topic
        assert event.id == change.event_id(state.customer_id)
        assert event.data.dimension == change.dimension and event.data.current == change.current
        assert event.data.previous is None and event.data.direction == "initial"
        assert event.data.metrics.spend_12m == Decimal(state.metrics.spend_12m) / 100
        assert event.data.metrics.orders_12m == 4 and event.data.metrics.last_purchase_at == NOW - timedelta(days=3)


def test_a_downgrade_says_in_the_customers_currency_what_brings_the_tier_back() -> None:
    policy = default_policy()
    change = domain.Change("value_tier", "high", "medium", "downgrade", "below the line", False, NOW,
                           spend_needed=1800_00)  # base currency: 1,800.00 CNY
    metrics = b'{"currency":"GBP","spend_12m":"10.00","orders_12m":1}'
    event = parsed(outbound.change_event(policy, "C-1", "e-1", change, metrics, False, None, "GBP"))
    assert isinstance(event, CustomerTierChanged)
    assert (event.data.spend_needed, event.data.metrics.currency) == (Decimal("200.00"), "GBP")  # 9 CNY a pound
    plain = parsed(outbound.change_event(policy, "C-1", "e-2", domain.Change(
        "value_tier", "medium", "high", "upgrade", "over the line", False, NOW), metrics, False, None, "GBP"))
    assert plain.data.spend_needed is None  # type: ignore[attr-defined]


def test_the_snapshot_tiering_builds_passes_the_contract_with_every_dimension() -> None:
    workflow, state, _ = workflow_with_customer()
    state.snapshot.pending["value_tier"] = domain.Pending(current="high", pending="medium", below_since=NOW,
                                                          effective_at=NOW + timedelta(days=30), needed="spend")
    metrics = outbound.tier_metrics(workflow.policy, None, state.metrics, NOW)
    record = outbound.snapshot_event(workflow.policy, state, metrics, NOW, cause=None)
    event = parsed(record)
    assert isinstance(event, CustomerClassification) and record.key == state.customer_id.encode()
    assert event.data.value_tier == state.snapshot.output["value_tier"] == "high"
    assert {dim: getattr(event.data, dim) for dim in domain.RANKS} == {
        dim: state.snapshot.output.get(dim) for dim in domain.RANKS}
    assert event.data.downgrade_pending["value_tier"].effective_at == NOW + timedelta(days=30)


def test_history_of_a_retried_evaluation_has_the_same_id_and_a_larger_one_another() -> None:
    workflow, state, changes = workflow_with_customer()
    ids = [c.event_id(state.customer_id) for c in changes]
    first = history_doc(state.customer_id, changes, ids, False, "v1")
    assert first["_id"] == history_doc(state.customer_id, changes, ids, False, "v1")["_id"]
    assert first["_id"] != history_doc(state.customer_id, changes[:1], ids[:1], False, "v1")["_id"]
    assert [c["event_id"] for c in first["changes"]] == ids


def test_stable_ids_are_the_uuid5_of_the_name_so_ids_stay_what_earlier_versions_published() -> None:
    for name in ("", "C-1|vip|None|vip|2026-06-01T12:00:00+00:00", "客户|分类|3", "x" * 500):
        assert domain.stable_id(name) == str(uuid.uuid5(domain.NAMESPACE, name))


def test_a_stored_customer_evaluated_first_after_a_start_has_its_snapshot_published_once() -> None:
    # The snapshot topic may hold what a killed process published and never stored: the first
    # evaluation after a start publishes the snapshot even though nothing visible moved.
    workflow, state, _ = workflow_with_customer()
    workflow.cutoffs = None

    def published(when: datetime) -> list[str]:
        order = f"o-{when.timestamp():.0f}"
        add_entry(state.ledger, Entry(f"p:{order}", "purchase", when, 100, order_id=order))
        cause = parse_event(json.dumps(envelope("order.purchase.completed", state.customer_id, {
            "order_id": order, "total_amount": "1.00", "currency": "CNY", "channel": "online"},
            time_=when)).encode())
        records, _ = workflow._evaluate([(state, when, cause)], when, [], [], bulk=False, force=False,
                                        immediate=False)
        return [parsed(r).type for r in records]

    assert published(NOW) == ["customer.classification"]
    assert published(NOW + timedelta(minutes=1)) == []


def test_a_customer_paying_in_one_currency_sees_figures_in_it_and_the_base_spend_the_policy_compared() -> None:
    workflow, _, _ = workflow_with_customer()
    policy = workflow.policy
    assert policy is not None

    def metrics_of(*currencies: str) -> object:
        state = CustomerState("C-outbound-2")
        for n, currency in enumerate(currencies):
            event = envelope("order.purchase.completed", "C-outbound-2", {
                "order_id": f"o{n}", "total_amount": "100.00", "currency": currency, "channel": "online"},
                time_=NOW - timedelta(days=n + 1))
            entry = entry_for(parse_event(json.dumps(event).encode()), policy)
            assert entry is not None
            add_entry(state.ledger, entry)
        metrics = compute_metrics(state.ledger.values(), NOW, policy)
        return json.loads(outbound.tier_metrics(policy, workflow.cutoffs, metrics, NOW))

    pounds = metrics_of("GBP", "GBP")
    assert (pounds["currency"], pounds["spend_12m"]) == ("GBP", "200.00")
    assert pounds["base"] == {"currency": "CNY", "spend_12m": "1800.00"}  # at the policy's 9.00 CNY per GBP
    mixed = metrics_of("GBP", "USD")
    assert (mixed["currency"], mixed["spend_12m"], "base" in mixed) == ("CNY", "1610.00", False)
