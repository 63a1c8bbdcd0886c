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


def test_joined_validation_batches_hold_the_same_tasks_in_order():
    import metacompose.training.data as data

    s = stream(split="val", batch_size=25, num_batches=8)
    (whole,) = list(data.Joined(s, max_tasks=1000))
    assert same(whole, TaskBatch.cat(list(s))) and whole.num_tasks == 200
    parts = list(data.Joined(s, max_tasks=60))  # at most 60 tasks a batch: 50, 50, 50, 50
    assert [p.num_tasks for p in parts] == [50, 50, 50, 50]
    assert same(TaskBatch.cat(parts), whole)


def test_joined_passes_image_batches_as_they_come():
    from metacompose.training.data import Joined

    g = torch.Generator().manual_seed(0)
    images = [
        TaskBatch(
            support_x=torch.randn(2, 3, 1, 4, 4, generator=g),
            support_y=torch.zeros(2, 3, dtype=torch.long),
            query_x=torch.randn(2, 5, 1, 4, 4, generator=g),
            query_y=torch.zeros(2, 5, dtype=torch.long),
        )
        for _ in range(3)
    ]
    out = list(Joined(images, max_tasks=1000))
    assert len(out) == 3 and all(a is b for a, b in zip(out, images, strict=True))


def test_joined_keeps_apart_batches_that_cannot_join():
    from metacompose.training.data import Joined

    plain = take(stream(split="val"), 3)
    described = TaskBatch(**{**vars(plain[1]), "descriptor": torch.zeros(8, 2)})
    out = list(Joined([plain[0], described, plain[2]], max_tasks=1000))
    assert [b.descriptor is None for b in out] == [True, False, True]
    assert same(out[0], plain[0]) and same(out[2], plain[2])
    with pytest.raises(ValueError, match="differ in their descriptor"):
        TaskBatch.cat([plain[0], described])


def test_validation_is_joined_only_without_micro_batches(tmp_path):
    from training_testing import tiny_overrides

    from metacompose.config import load_config
    from metacompose.training.data import JOIN_BATCHES, Joined
    from metacompose.training.run import build_run

    def loader(*extra):
        over = tiny_overrides(tmp_path, "j", "data.meta_batch_size=8", "data.val_tasks=400", *extra)
        _, dm, _ = build_run(load_config("configs/sinusoid.yaml", over))
        dm.setup("fit")
        return dm.val_dataloader()

    joined = loader()
    assert isinstance(joined.dataset, Joined)
    assert [b.num_tasks for b in joined] == [8 * JOIN_BATCHES] * (400 // (8 * JOIN_BATCHES)) + [
        400 % (8 * JOIN_BATCHES)
    ]
    apart = loader("data.task_chunk_size=4")  # a memory limit on how many tasks adapt at once
    assert not isinstance(apart.dataset, Joined)
    assert {b.num_tasks for b in apart} == {8}


def test_validation_logs_the_mean_over_every_validation_task(tmp_path):
    """The logged ``val/query_mse`` equals the mean of per-task curves computed batch by batch on
    the stream's own meta-batches (the tasks validation used before they were joined)."""
    from training_testing import tiny_overrides

    from metacompose.config import load_config
    from metacompose.training import train
    from metacompose.training.run import build_run

    cfg = load_config(
        "configs/sinusoid.yaml",
        tiny_overrides(
            tmp_path,
            "val",
            "trainer.max_steps=4",
            "trainer.val_check_interval=4",
            "data.meta_batch_size=8",
            "data.val_tasks=32",
        ),
    )
    result = train(cfg)
    module, datamodule, _ = build_run(cfg)
    state = torch.load(result.checkpoint, weights_only=True)["state_dict"]
    module.load_state_dict(state)
    datamodule.setup("fit")
    loader = datamodule.val_dataloader()
    batches = list(loader.dataset.stream)
    assert len(batches) > 1  # the check means something only with several meta-batches
    with torch.no_grad():
        curves = torch.cat([module.learner.evaluate(b) for b in batches], dim=1)
    logged = result.metrics["val/query_mse"]
    assert abs(logged - float(curves[-1].mean())) <= 1e-6 * max(1.0, abs(logged))
