"""``tasks_digest``: the digest of a task stream, against a hand-written hash of its values."""

import hashlib
import struct

import torch

from metacompose.evaluate import meta_test_batches
from metacompose.tasks import CompositionalFamily, SinusoidFamily
from metacompose.tasks.base import TaskBatch
from metacompose.tasks.fingerprint import tasks_digest


def by_hand(batches: list[TaskBatch]) -> str:
    """SHA-256 over each field's header and its values packed one by one, little-endian."""
    h = hashlib.sha256()
    for b in batches:
        for name in ("support_x", "support_y", "query_x", "query_y"):
            t = getattr(b, name)
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
            code = {torch.float32: "f", torch.int64: "q"}[t.dtype]
            values = t.flatten().tolist()
            h.update(struct.pack(f"<{len(values)}{code}", *values))
    return h.hexdigest()[:16]


def stream(family, *, seed: int = 0, n_tasks: int = 12, batch_size: int = 5, **kw):
    return list(meta_test_batches(family, n_tasks=n_tasks, shots=4, query=3, seed=seed,
                                  batch_size=batch_size, **kw))  # fmt: skip


def test_digest_is_the_sha256_of_the_values_in_order():
    batches = stream(SinusoidFamily())
    assert tasks_digest(batches) == by_hand(batches)
    labels = TaskBatch(  # int64 labels hash as stored too
        support_x=torch.randn(2, 3, 4), support_y=torch.tensor([[0, 1, 2], [2, 1, 0]]),
        query_x=torch.randn(2, 1, 4), query_y=torch.tensor([[1], [0]]),
    )  # fmt: skip
    assert tasks_digest([labels]) == by_hand([labels])
    assert len(tasks_digest(batches, length=64)) == 64


def test_equal_streams_agree_and_any_change_disagrees():
    fam = SinusoidFamily()
    base = tasks_digest(stream(fam))
    assert tasks_digest(stream(fam)) == base
    assert tasks_digest(stream(fam, seed=1)) != base
    assert tasks_digest(stream(fam, batch_size=4)) != base  # the batch size is part of the stream
    changed = stream(fam)
    changed[2].query_y[0, 0, 0] += 1e-6
    assert tasks_digest(changed) != base


def test_subsets_differ_and_a_descriptor_does_not_change_the_tasks():
    """Held-out and seen tasks are other tasks; the descriptor-routed family draws the same
    tasks as the data-routed one (only the descriptor, which is not hashed, is added)."""
    plain, onehot = CompositionalFamily(), CompositionalFamily(descriptor="onehot")
    held = tasks_digest(stream(plain, subset="held_out"))
    assert held != tasks_digest(stream(plain, subset="seen"))
    assert held == tasks_digest(stream(onehot, subset="held_out"))
