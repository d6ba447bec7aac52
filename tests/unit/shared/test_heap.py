import gc
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from shared.heap import FULL_COLLECTION_EVERY_S, Heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test run keeps its usual collector


def in_a_generation(obj: object) -> bool:
    return any(o is obj for generation in range(3) for o in gc.get_objects(generation))


def test_settling_takes_what_lives_out_of_the_collectors_generations() -> None:
    node = Node()
    assert in_a_generation(node)
    Heap().settle()
    assert not in_a_generation(node)
    assert gc.get_freeze_count() > 0


def test_a_frozen_reference_cycle_is_freed_by_the_next_full_collection_and_not_before() -> None:
    ticker = Ticker()
    heap = Heap(monotonic=ticker)
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    heap.settle()
    del a, b
    gc.collect()
    assert gone() is not None  # frozen: the collector does not see the cycle
    ticker.now += FULL_COLLECTION_EVERY_S - 1
    heap.settle()
    assert gone() is not None
    ticker.now += 1
    heap.settle()
    assert gone() is None


def test_an_object_freed_by_its_reference_count_leaves_the_frozen_set() -> None:
    heap = Heap()
    nodes = [Node() for _ in range(1000)]
    heap.settle()
    frozen = gc.get_freeze_count()
    del nodes
    assert gc.get_freeze_count() <= frozen - 1000


def test_the_frozen_object_count_is_a_metric() -> None:
    registry = CollectorRegistry()
    Heap(registry).settle()
    assert registry.get_sample_value("carecrm_gc_frozen_objects") == gc.get_freeze_count() > 0
