"""Intervals at the level of the independent unit: the group, not the task.

Tasks of a grouped family (:mod:`metacompose.tasks.grouped`) are drawn from a handful of held-out
groups (13 schools, 9 states): 400 tasks from 13 schools are 13 independent observations, not
400. Each method's score is therefore summarised over *groups*:

1. average the per-task values within each group (``group_means``);
2. take the mean of those G group means and the Student-t half-width
   ``t_{0.975, G-1} * sd / sqrt(G)`` (``over_groups``).

Every group counts once, however many tasks it drew, so the target is the mean over the
population of groups. A comparison of two methods scored on the *same* tasks is the same
computation on the per-task differences (``paired_over_groups``), and its verdict is a plain
``win`` / ``tie`` / ``loss``: ``win`` when the whole 95% interval of the difference lies on the
method's better side of zero (``verdict``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from metacompose.report.student_t import t_ppf

Verdict = Literal["win", "tie", "loss", "diverged"]


@dataclass(frozen=True)
class GroupEstimate:
    """The mean of G per-group means with its 95% Student-t half-width over groups.

    Attributes:
        mean: mean of the per-group means (each group weighted once).
        ci95: ``t_{0.975, G-1} * sd(group means) / sqrt(G)``; NaN when ``G < 2`` or not finite.
        n_groups: G, the independent units.
        n_tasks: tasks behind the group means.
    """

    mean: float
    ci95: float
    n_groups: int
    n_tasks: int

    @property
    def low(self) -> float:
        return self.mean - self.ci95

    @property
    def high(self) -> float:
        return self.mean + self.ci95

    @property
    def finite(self) -> bool:
        return math.isfinite(self.mean) and math.isfinite(self.ci95)

    def text(self, digits: int = 4) -> str:
        """``mean ± half-width [G groups]``; ``diverged`` when the mean is not finite."""
        if not math.isfinite(self.mean):
            return f"diverged [{self.n_groups} groups]"
        return f"{self.mean:.{digits}f} ± {self.ci95:.{digits}f} [{self.n_groups} groups]"

    def to_json_dict(self) -> dict:
        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {"mean": num(self.mean), "ci95": num(self.ci95), "n_groups": self.n_groups,
                "n_tasks": self.n_tasks, "interval": "student_t_over_group_means"}  # fmt: skip


def group_means(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` within each distinct group, in increasing order of group id.

    Args:
        values: ``(N,)`` per-task values.
        groups: ``(N,)`` integer group of each task.

    Returns:
        ``(G,)`` float64, one entry per group that occurs in ``groups``.
    """
    v, g = values.detach().double().flatten(), groups.flatten().long()
    if v.shape != g.shape:
        raise ValueError(f"values {tuple(v.shape)} and groups {tuple(g.shape)} differ in shape")
    _, inverse, counts = torch.unique(g, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, inverse, v)
    return sums / counts


def over_groups(values: torch.Tensor, groups: torch.Tensor) -> GroupEstimate:
    """The group-level estimate of per-task ``values`` ``(N,)`` from groups ``groups`` ``(N,)``."""
    means = group_means(values, groups)
    n = len(means)
    mean = float(means.mean()) if n else math.nan
    if n < 2 or not math.isfinite(mean):
        return GroupEstimate(mean=mean, ci95=math.nan, n_groups=n, n_tasks=values.numel())
    half = t_ppf(0.975, n - 1) * float(means.std(unbiased=True)) / math.sqrt(n)
    return GroupEstimate(mean=mean, ci95=half, n_groups=n, n_tasks=values.numel())


def paired_over_groups(a: torch.Tensor, b: torch.Tensor, groups: torch.Tensor) -> GroupEstimate:
    """``a - b`` of two methods on the same tasks: per-group mean differences, t over groups."""
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return over_groups(a.double() - b.double(), groups)


def verdict(difference: GroupEstimate, metric: str) -> Verdict:
    """Win / tie / loss of a method against a baseline from ``method - baseline``.

    ``metric``: ``"mse"`` (lower is better) or ``"accuracy"`` (higher is better). ``win``: the 95%
    interval lies entirely on the method's better side of zero; ``loss``: entirely on the other
    side; ``tie``: it contains zero, or there is no interval (one group). ``diverged``: the mean
    difference is not finite (either method diverged on some task).
    """
    if metric not in ("mse", "accuracy"):
        raise ValueError(f"metric must be 'mse' or 'accuracy', got {metric!r}")
    if not math.isfinite(difference.mean):
        return "diverged"
    if not math.isfinite(difference.ci95):
        return "tie"
    # the interval of the improvement (positive: the method is better)
    if metric == "mse":
        gain_low, gain_high = -difference.high, -difference.low
    else:
        gain_low, gain_high = difference.low, difference.high
    if gain_low > 0:
        return "win"
    return "loss" if gain_high < 0 else "tie"


def over_groups_per_step(curve: torch.Tensor, groups: torch.Tensor) -> list[GroupEstimate]:
    """:func:`over_groups` of each row of a ``(S + 1, N)`` curve (metric after 0..S steps)."""
    return [over_groups(row, groups) for row in curve]


def grouped_table(curve: torch.Tensor, groups: torch.Tensor, metric: str) -> str:
    """The per-step table of ``metacompose eval`` with intervals over groups instead of tasks.

    Args:
        curve: ``(S + 1, N)`` per-task metric after 0..S steps.
        groups: ``(N,)`` group of each task.
    """
    rows = over_groups_per_step(curve, groups)
    g = rows[0].n_groups if rows else 0
    lines = [f"{'step':>4}  {'query ' + metric:>14}  {'± 95% CI':>10}   (t over {g} groups)"]
    for s, e in enumerate(rows):
        lines.append(f"{s:>4}  {e.mean:>14.4f}  {e.ci95:>10.4f}")
    return "\n".join(lines)
