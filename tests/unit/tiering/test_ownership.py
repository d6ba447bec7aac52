"""Instances sharing the store: a rebalance re-reads what another instance may have moved on."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from services.tiering.handlers import Ownership
from services.tiering.policy import default_policy
from services.tiering.repository import CustomerState
from services.tiering.settings import TieringSettings
from services.tiering.workflow import Workflow
from shared.clock import FixedClock

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


class Store:
    """What ``Workflow.ready`` reads; ``revisions`` is what other instances have written so far."""

    def __init__(self, revisions: dict[str, int]) -> None:
        self.revisions = revisions
        self.reads = 0
        self.fail = False

    async def active_policy(self) -> Any:
        return default_policy()

    async def latest_cutoffs(self) -> None:
        return None

    async def directory(self, keep: Callable[[Mapping[str, Any]], Any]) -> dict[str, tuple[int, Any]]:
        self.reads += 1
        if self.fail:
            raise ConnectionError("store away")
        return {cid: (rev, keep({"customer_id": cid, "rev": rev, "updated_at": NOW}))
                for cid, rev in self.revisions.items()}


def workflow_on(store: Store) -> Workflow:
    return Workflow(TieringSettings(), repo=store, clock=FixedClock(NOW), registry=CollectorRegistry(),  # type: ignore[arg-type]
                    publisher=None)


def held(workflow: Workflow, customer: str, rev: int) -> None:
    state = CustomerState(customer)
    state.rev = rev
    workflow.cache[customer] = state


async def test_resync_drops_only_the_customers_whose_stored_revision_moved_on() -> None:
    store = Store({"moved": 2, "kept": 3})
    workflow = workflow_on(store)
    await workflow.ready()
    held(workflow, "moved", 2)
    held(workflow, "kept", 3)
    held(workflow, "new", 0)  # never written: nobody else knows it either
    store.revisions.update(moved=5, other=1)  # another instance wrote on
    await workflow.resync()
    assert list(workflow.cache) == ["kept", "new"]
    assert workflow.directory == {"moved": 5, "kept": 3, "other": 1}


async def test_resync_before_anything_was_read_reads_nothing() -> None:
    store = Store({"a": 1})
    await workflow_on(store).resync()
    assert store.reads == 0


async def test_a_resync_the_store_refuses_leaves_nothing_stale_in_memory() -> None:
    store = Store({"a": 1})
    workflow = workflow_on(store)
    await workflow.ready()
    held(workflow, "a", 1)
    store.fail = True
    with pytest.raises(ConnectionError):
        await workflow.resync()
    assert not workflow.cache and workflow.policy is None  # the next batch reads everything again
    store.fail = False
    await workflow.ready()
    assert workflow.directory == {"a": 1}


async def test_only_partitions_a_consumer_did_not_hold_make_it_resync() -> None:
    store = Store({"a": 1})
    workflow = workflow_on(store)
    await workflow.ready()
    listener = Ownership(workflow)
    tp = [TopicPartition("orders.purchases.v1", p) for p in range(6)]
    await listener.on_partitions_assigned(set(tp))
    await workflow.run_due()  # the next step under the lock reads again
    assert store.reads == 2
    await listener.on_partitions_revoked(set(tp))
    await listener.on_partitions_assigned(set(tp[:3]))  # another instance joined: nothing gained
    await workflow.run_due()
    assert store.reads == 2
    await listener.on_partitions_revoked(set(tp[:3]))
    await listener.on_partitions_assigned(set(tp))  # it left: its partitions come back
    await workflow.run_due()
    assert store.reads == 3


async def test_being_given_partitions_neither_waits_for_the_batch_in_hand_nor_reads_the_store() -> None:
    # The consumer sends no heartbeats while its callback runs: at 100,000 customers, waiting for
    # the batch in hand and reading every customer there outlasted the session.
    store = Store({"a": 1})
    workflow = workflow_on(store)
    await workflow.ready()
    listener = Ownership(workflow)
    await workflow.lock.acquire()  # a batch being applied
    await asyncio.wait_for(listener.on_partitions_assigned({TopicPartition("orders.purchases.v1", 0)}), 1)
    assert store.reads == 1
    workflow.lock.release()
    store.revisions["a"] = 2  # what the partition's previous owner wrote
    await workflow.run_due()  # read again before anything is applied
    assert store.reads == 2 and workflow.directory == {"a": 2}


async def test_partitions_given_before_the_first_read_are_not_read_twice() -> None:
    store = Store({"a": 1})
    workflow = workflow_on(store)
    for topic in ("orders.purchases.v1", "crm.customers.v1"):  # every consumer joins at start
        await Ownership(workflow).on_partitions_assigned({TopicPartition(topic, 0)})
    await workflow.run_due()
    await workflow.run_due()
    assert store.reads == 1


async def test_joining_does_not_wait_for_the_batch_in_hand() -> None:
    # Before its first join a consumer is told it gives up nothing: that waited for the directory
    # read at start (a minute at 100,000 customers), and the consumer joined its group only then.
    workflow = workflow_on(Store({}))
    listener = Ownership(workflow)
    await workflow.lock.acquire()
    await asyncio.wait_for(listener.on_partitions_revoked(set()), 1)
    workflow.lock.release()


async def test_giving_partitions_up_waits_for_the_batch_in_hand() -> None:
    workflow = workflow_on(Store({}))
    listener = Ownership(workflow)
    tp = {TopicPartition("orders.purchases.v1", 0)}
    await listener.on_partitions_assigned(tp)
    await workflow.lock.acquire()  # a batch being applied
    revoked = asyncio.create_task(listener.on_partitions_revoked(tp))
    await asyncio.sleep(0.05)
    assert not revoked.done()
    workflow.lock.release()
    await asyncio.wait_for(revoked, 1)


class Revisions:
    """A collection that already holds some revisions, as a failed earlier attempt left them."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = {d["_id"]: d for d in docs}

    async def bulk_write(self, requests: list[Any], ordered: bool) -> None:
        from pymongo.errors import BulkWriteError

        errors = []
        for n, request in enumerate(requests):
            doc = request._doc  # noqa: SLF001 - pymongo's InsertOne keeps its document there
            if doc["_id"] in self.docs:
                errors.append({"index": n, "code": 11000})
            else:
                self.docs[doc["_id"]] = doc
        if errors:
            raise BulkWriteError({"writeErrors": errors})

    async def replace_one(self, key: dict[str, Any], doc: dict[str, Any]) -> None:
        self.docs[key["_id"]] = doc


async def test_a_retried_batch_replaces_the_revision_its_failed_attempt_wrote() -> None:
    from services.tiering.repository import insert_all

    # The first attempt stored C-1#2 with one purchase, then failed to publish; the retry read two.
    collection = Revisions([{"_id": "C-1#2", "ledger": ["p:1"]}])
    await insert_all(collection, [{"_id": "C-1#2", "ledger": ["p:1", "p:2"]}, {"_id": "C-2#1", "ledger": ["p:3"]}],
                     replace_duplicates=True)
    assert collection.docs == {"C-1#2": {"_id": "C-1#2", "ledger": ["p:1", "p:2"]},
                               "C-2#1": {"_id": "C-2#1", "ledger": ["p:3"]}}


def test_a_refresh_the_population_sets_off_waits_a_multiple_of_how_long_the_last_one_took() -> None:
    workflow = workflow_on(Store({}))
    workflow._population_moved = True
    workflow.settings = workflow.settings.model_copy(update={"refresh_min_interval_s": 30.0})
    workflow._refresh_took = 20.0  # a slow refresh: wait 5 x 20 s, not 30 s
    workflow._refreshed_at = time.monotonic() - 60
    assert not workflow._refresh_wanted()
    workflow._refreshed_at = time.monotonic() - 101
    assert workflow._refresh_wanted()
    workflow._refresh_took = 1.0  # a quick one: the floor of 30 s applies
    workflow._refreshed_at = time.monotonic() - 29
    assert not workflow._refresh_wanted()
