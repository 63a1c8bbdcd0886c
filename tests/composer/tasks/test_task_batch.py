"""``TaskBatch.to``: nothing moves (the same object) when every tensor is on the device already;
a cast or another device gives a new batch with the same values; the Lightning module's batch
transfer (the data module's) goes through it for one batch and for a list of them."""

from __future__ import annotations

import torch

from metacompose.tasks.base import TaskBatch


def batch(dtype=torch.float32) -> TaskBatch:
    g = torch.Generator().manual_seed(0)
    return TaskBatch(
        support_x=torch.randn(3, 5, 1, generator=g, dtype=dtype),
        support_y=torch.randint(0, 4, (3, 5), generator=g),
        query_x=torch.randn(3, 7, 1, generator=g, dtype=dtype),
        query_y=torch.randint(0, 4, (3, 7), generator=g),
        descriptor=torch.randn(3, 2, generator=g, dtype=dtype),
        info={"amplitude": torch.rand(3, generator=g, dtype=dtype)},
    )


def assert_same_values(a: TaskBatch, b: TaskBatch) -> None:
    for name in ("support_x", "support_y", "query_x", "query_y", "descriptor"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and torch.equal(x, y), name
    assert a.info.keys() == b.info.keys()
    assert all(torch.equal(a.info[k], b.info[k]) for k in a.info)


def test_to_where_it_is_returns_the_batch_itself():
    b = batch()
    assert b.to("cpu") is b
    assert b.to(torch.device("cpu")) is b
    copied = b.to("cpu", copy=True)  # a keyword argument for Tensor.to: a new batch
    assert copied is not b and copied.support_x.data_ptr() != b.support_x.data_ptr()
    assert_same_values(copied, b)


def test_a_cast_makes_a_new_batch_and_keeps_labels_integer():
    b = batch()
    c = b.to("cpu", dtype=torch.float64)
    assert c is not b
    assert c.support_x.dtype == torch.float64 and c.info["amplitude"].dtype == torch.float64
    assert c.support_y.dtype == torch.int64
    assert_same_values(c.to("cpu", dtype=torch.float32), b)


def test_the_data_modules_batch_transfer_keeps_every_value():
    from metacompose.training.data import MetaDataModule

    b = batch()
    moved = MetaDataModule.transfer_batch_to_device(None, b, torch.device("cpu"), 0)
    assert moved is b
    many = MetaDataModule.transfer_batch_to_device(None, [b, batch()], torch.device("cpu"), 0)
    assert isinstance(many, list) and len(many) == 2
    assert_same_values(many[0], b)
