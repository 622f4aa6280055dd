"""The torchrun building blocks on their own: batch sharding, and the gather/broadcasts on a real
3-process gloo group with uneven (and empty) shards. The end-to-end 2-rank run is in
tests/training/test_run_torchrun.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from deepemocluster.data.samplers import ShardedBatches, ShuffledBatchSampler
from deepemocluster.runtime import distributed
from tests.support.loopback import free_port


def test_shards_of_each_batch_add_up_to_it_and_every_rank_steps_alike():
    batches = ShuffledBatchSampler(np.arange(23), batch_size=8, seed=3)  # 8, 8, 7
    shards = [list(ShardedBatches(batches, rank, 3)) for rank in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    for step, batch in enumerate(batches):
        assert np.array_equal(np.concatenate([s[step] for s in shards]), batch)
        assert max(len(s[step]) for s in shards) - min(len(s[step]) for s in shards) <= 1


def test_a_last_batch_smaller_than_the_world_is_dropped():
    batches = ShuffledBatchSampler(np.arange(9), batch_size=4, seed=0)  # 4, 4, 1
    for rank in range(2):
        assert [len(b) for b in ShardedBatches(batches, rank, 2)] == [2, 2]


def test_a_world_of_one_passes_everything_through():
    world = distributed.World()
    rows = np.arange(12, dtype=np.float32).reshape(6, 2)
    assert distributed.gather_rows(rows, world) is rows
    assert np.array_equal(distributed.shard(np.arange(5), world), np.arange(5))
    assert distributed.broadcast_object({"a": 1}, world) == {"a": 1}


def _rank_main(rank: int, size: int, port: int, n: int, results) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size
    )
    world = distributed.World(rank, size)
    ids = distributed.shard(np.arange(n), world)
    rows = np.stack([ids * 10.0, ids + 0.5], axis=1).astype(np.float32)
    if len(ids) == 0:  # as embed_chunks returns it: an empty shard never saw the head's width
        rows = np.empty((0, 0), dtype=np.float32)
    gathered = distributed.gather_rows(rows, world)
    labels = distributed.broadcast_array(
        np.arange(n)[::-1].copy() if world.is_main else None, n, world
    )
    shared = distributed.broadcast_object({"from": rank}, world)
    results[rank] = (None if gathered is None else gathered.tolist(), labels.tolist(), shared)
    dist.destroy_process_group()


@pytest.mark.parametrize("n", [10, 2])  # shards of 4/3/3 rows, and 1/1/0
def test_gather_and_broadcasts_across_three_gloo_processes(n):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_rank_main, args=(3, free_port(), n, results), nprocs=3)
        results = dict(results)
    ids = np.arange(n)
    expected = np.stack([ids * 10.0, ids + 0.5], axis=1)
    assert np.array_equal(np.array(results[0][0]), expected)  # all rows, in id order, no padding
    assert results[1][0] is None and results[2][0] is None
    for rank in range(3):
        assert results[rank][1] == list(range(n))[::-1]
        assert results[rank][2] == {"from": 0}
