"""The 95% interval of a mean over tasks (normal approximation): one formula for ``evaluate`` and
``report`` (:func:`metacompose.report.stats.over_tasks`). A leaf module: torch only."""

from __future__ import annotations

import math

import torch

Z95 = 1.96  # two-sided 95% quantile of the standard normal


def ci95_over_tasks(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Half-width ``1.96 * sd / sqrt(N)`` of the mean of ``values`` over ``dim`` (N tasks).

    Args:
        values: per-task values, e.g. ``(N,)`` or ``(S, N)`` with ``dim=1``.

    Returns:
        ``values`` reduced over ``dim``, in its dtype; sd is the unbiased one; nan where ``N < 2``.
    """
    n = values.shape[dim]
    if n < 2:
        return torch.full_like(values.select(dim, 0), math.nan)
    return Z95 * values.std(dim=dim, unbiased=True) / math.sqrt(n)
