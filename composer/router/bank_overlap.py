"""Candidates that share curves: a label-free sign that one candidate holds two primitives.

A candidate of a :class:`~metacompose.modules.warp_line.WarpLineBank` is a family of curves, one
per context. When some of candidate ``a``'s curves are also curves of candidate ``b`` (up to the
amplitude every fit chooses, and the offset when the learner fits one), a task there fits either
equally well, and nothing in training stops ``b`` from holding, at contexts that ``a`` does not
reach, a second primitive: tasks of a held-out pair are then routed to ``b`` and predicted by a
shape that was only ever fitted beside other partners. docs/router.md, "A candidate that holds two
primitives", has the measurements: of 56 checkpoints, the 9 (from 3 runs) with a shared curve
route held-out tasks at 73-96%; a bank can also hold two primitives without sharing a curve (the
two candidates holding adjacent parts of one primitive's range), which this does not see.

Only the learner's own banks are read: no task, no label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.modules.warp_line import WarpLineBank

Tensor = torch.Tensor
THRESHOLD = 0.01  # a curve is reproduced when the residual keeps under 1% of its variance
POINTS = 241  # points on the input range at which curves are compared


def residual_fraction(a: Tensor, b: Tensor, *, offset: bool) -> Tensor:
    """``a`` ``(G, N)`` and ``b`` ``(H, N)``, curves at the same ``N`` points -> ``(G, H)``: the
    residual of the least-squares fit ``a_i ~ s b_j`` (``offset``: ``a_i ~ s b_j + c``) as a
    fraction of ``a_i``'s variance over the points; nan where ``a_i`` is flat (no shape to share)."""
    if offset:
        a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
    n, var = a.shape[-1], a.var(-1, unbiased=False)
    den = (b * b).sum(-1)
    explained = torch.where(den > 0, (a @ b.T) ** 2 / den.clamp_min(1e-300), 0.0)
    res = ((a * a).sum(-1)[:, None] - explained).clamp_min(0.0) / (n * var[:, None])
    return torch.where(var[:, None] > 1e-12, res, math.nan)


@dataclass(frozen=True)
class BankOverlap:
    """``shared[a][b]``: how many of candidate ``a``'s ``contexts`` curves some curve of candidate
    ``b`` reproduces to within ``threshold`` of its variance."""

    shared: tuple[tuple[int, ...], ...]
    contexts: int
    threshold: float

    def pairs(self) -> list[tuple[int, int, int]]:
        """``(a, b, count)`` for every ordered pair that shares a curve, most shared first."""
        found = [(a, b, n) for a, row in enumerate(self.shared) for b, n in enumerate(row)
                 if a != b and n]  # fmt: skip
        return sorted(found, key=lambda p: (-p[2], p[0], p[1]))

    @property
    def fraction(self) -> float:
        """The largest share of one candidate's curves that another reproduces (0: none)."""
        return max((n for _, _, n in self.pairs()), default=0) / self.contexts

    def describe(self, name: str) -> str:
        """One line for a person: which candidates share curves, or that none do."""
        within = f"within {self.threshold:.0%} of its variance"
        if not self.pairs():
            return (f"{name}: no candidate reproduces a curve of another ({len(self.shared)} "
                    f"candidates, {self.contexts} contexts each, {within})")  # fmt: skip
        said = "; ".join(f"candidate {b} reproduces {n} of candidate {a}'s {self.contexts} curves"
                         for a, b, n in self.pairs())  # fmt: skip
        return f"{name}: {said} ({within}): tasks there can be routed to either"

    def to_json(self) -> dict:
        return {"shared": [list(r) for r in self.shared], "contexts": self.contexts,
                "threshold": self.threshold, "fraction": self.fraction}  # fmt: skip


@torch.no_grad()
def bank_overlap(bank: WarpLineBank, *, x: Tensor, grid: Tensor, offset: bool,
                 threshold: float = THRESHOLD) -> BankOverlap:  # fmt: skip
    """Which of ``bank``'s candidates reproduce another's curves, each candidate read at every
    context of ``grid`` over the points ``x`` ``(N,)``, in float64."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold={threshold}: must be in (0, 1)")
    h = bank.on_grid(x.double()[None], grid.double())[:, :, 0]  # (C, G, N)
    count = h.shape[0]
    shared = []
    for a in range(count):
        row = []
        for b in range(count):
            if a == b:
                row.append(0)
                continue
            best = residual_fraction(h[a], h[b], offset=offset).amin(1)  # nan stays nan
            row.append(int((best < threshold).sum()))
        shared.append(tuple(row))
    return BankOverlap(shared=tuple(shared), contexts=len(grid), threshold=threshold)


def learner_overlap(learner: AnnealedSumLearner, *, low: float, high: float,
                    threshold: float = THRESHOLD) -> dict[str, BankOverlap]:  # fmt: skip
    """:func:`bank_overlap` of the kept replica's banks on ``[low, high]`` (the tasks' inputs) at
    the learner's evaluation grid: ``{"f", "g"}`` for the sum, ``{"bank"}`` for one shared bank;
    ``{}`` for the chain, whose terms are not fitted to the task side by side (g reads f's output,
    so two f-candidates alike up to a scale are not alike to g)."""
    if not low < high:
        raise ValueError(f"the input range [{low}, {high}] is empty")
    if learner.structure != "sum":
        return {}
    x = torch.linspace(low, high, POINTS, dtype=torch.float64)
    r, grid = learner.kept, learner.eval_grid
    if learner.shared:
        banks = {"bank": learner.f_banks[r]}
    else:
        banks = {"f": learner.f_banks[r], "g": learner.g_banks[r]}
    return {name: bank_overlap(b, x=x, grid=grid, offset=learner.offset, threshold=threshold)
            for name, b in banks.items()}  # fmt: skip


__all__ = ["THRESHOLD", "BankOverlap", "bank_overlap", "learner_overlap", "residual_fraction"]
