"""Task streams: batch i depends only on (seed, split, rank, i); global sharding unions to 1 process."""

from __future__ import annotations

import itertools

import pytest
import torch

from metacompose.tasks import SinusoidFamily, TaskBatch
from metacompose.training import TaskStream

FAMILY = SinusoidFamily()


def stream(**kw) -> TaskStream:
    args = {"family": FAMILY, "split": "train", "seed": 7, "batch_size": 8, "shots": 3, "query": 2}
    return TaskStream(**{**args, **kw})


def same(a: TaskBatch, b: TaskBatch) -> bool:
    return all(
        torch.equal(getattr(a, f), getattr(b, f))
        for f in ("support_x", "support_y", "query_x", "query_y")
    )


def take(s: TaskStream, n: int) -> list[TaskBatch]:
    return list(itertools.islice(iter(s), n))


def test_batches_are_a_function_of_their_index():
    first = take(stream(), 5)
    resumed = take(stream(start=3), 2)  # a resumed stream continues exactly
    assert same(first[3], resumed[0]) and same(first[4], resumed[1])
    assert not same(first[0], first[1])
    assert not same(first[0], take(stream(split="val"), 1)[0])
    assert not same(first[0], take(stream(seed=8), 1)[0])


def test_global_sharding_union_is_the_single_process_batch():
    whole = take(stream(sharding="global"), 3)
    for i in range(3):
        parts = [take(stream(sharding="global", rank=r, world_size=4), 3)[i] for r in range(4)]
        assert same(TaskBatch.cat(parts), whole[i])


def test_per_rank_streams_are_disjoint():
    a = take(stream(rank=0, world_size=2), 2)
    b = take(stream(rank=1, world_size=2), 2)
    assert a[0].num_tasks == 4
    assert not torch.isin(a[0].info["amplitude"], b[0].info["amplitude"]).any()


def test_chunks_partition_each_meta_batch():
    whole = take(stream(), 2)
    chunks = take(stream(chunks=4), 8)
    assert [c.num_tasks for c in chunks] == [2] * 8
    assert same(TaskBatch.cat(chunks[:4]), whole[0]) and same(TaskBatch.cat(chunks[4:]), whole[1])


def test_finite_stream_restarts_and_bad_layouts_fail():
    s = stream(num_batches=2)
    assert len(s) == 2 and all(same(a, b) for a, b in zip(list(s), list(s)))
    with pytest.raises(ValueError, match="divisible by 3 rank"):
        stream(world_size=3)
    with pytest.raises(ValueError, match=r"data\.sharding"):
        stream(sharding="bogus")
