"""Shared by the annealed learner's tests (test_annealed_sum, test_annealed_chain,
test_shared_pairs): a float64 batch of random tasks."""

from __future__ import annotations

import torch

from metacompose.tasks.base import TaskBatch


def random_batch(t: int, k: int, q: int, seed: int = 1, y=None) -> TaskBatch:
    """``t`` tasks of ``k`` support and ``q`` query points, inputs uniform on [-3, 3]; targets
    standard normal, or ``y(x)``."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(t, k + q, 1, generator=g, dtype=torch.float64) - 0.5) * 6
    y = torch.randn(t, k + q, 1, generator=g, dtype=torch.float64) if y is None else y(x)
    return TaskBatch(support_x=x[:, :k], support_y=y[:, :k], query_x=x[:, k:], query_y=y[:, k:])
