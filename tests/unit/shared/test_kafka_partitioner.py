"""The producer's partitioner: the same partition as aiokafka's (and the Java client's) default."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from shared.kafka import KeyHashCache


def test_the_caching_partitioner_picks_the_default_partition_for_every_key_first_and_again() -> None:
    cached, default = KeyHashCache(size=50), DefaultPartitioner()
    partitions = list(range(6))
    keys = [f"C-{n}".encode() for n in range(200)] + ["客户-1".encode(), b""]
    for _ in range(2):  # the second pass answers from the cache (and after it was cleared once)
        for key in keys:
            assert cached(key, partitions, partitions) == default(key, partitions, partitions)
    assert cached(None, partitions, [3]) == 3
