"""Candidates that share curves: a label-free sign that one candidate holds two primitives.

A candidate of a :class:`~metacompose.modules.warp_line.WarpLineBank` is a family of curves, one
per context. When some of candidate ``a``'s curves are also curves of candidate ``b`` (up to the
amplitude every fit chooses, and the offset when the learner fits one), a task there fits either
equally well, and nothing in training stops ``b`` from holding, at contexts that ``a`` does not
reach, a second primitive: tasks of a held-out pair are then routed to ``b`` and predicted by a
shape that was only ever fitted beside other partners. The sum's two banks are read as one set of
candidates (``f[k]``, ``g[k]``), since either bank may hold either slot's primitives. A bank can
also hold two primitives without sharing a curve (two candidates holding adjacent parts of one
primitive's range), which this does not see. docs/router.md, "A candidate that holds two
primitives", has the measurements. Only the learner's own banks are read: no task, no label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from metacompose.modules.warp_line import WarpLineBank

if TYPE_CHECKING:
    from metacompose.algorithms.annealed_sum import AnnealedSumLearner

Tensor = torch.Tensor
THRESHOLD = 0.01  # a curve is reproduced when the residual keeps under 1% of its variance
POINTS = 241  # points on the input range at which curves are compared
FLAT = 1e-12  # a curve whose variance is below this share of its mean square has no shape


def residual_fraction(a: Tensor, b: Tensor, *, offset: bool) -> Tensor:
    """``a`` ``(G, N)`` and ``b`` ``(H, N)``, curves at the same ``N`` points -> ``(G, H)``: the
    residual of the least-squares fit ``a_i ~ s b_j`` (``offset``: ``a_i ~ s b_j + c``) as a
    fraction of ``a_i``'s variance over the points (above 1 is possible without the offset); nan
    where ``a_i`` is flat (no shape to share)."""
    if offset:
        a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
    n, var = a.shape[-1], a.var(-1, unbiased=False)
    den = (b * b).sum(-1)
    explained = torch.where(den > 0, (a @ b.T) ** 2 / den.clamp_min(1e-300), 0.0)
    res = ((a * a).sum(-1)[:, None] - explained).clamp_min(0.0) / (n * var[:, None])
    shaped = var > FLAT * (a * a).mean(-1)
    return torch.where(shaped[:, None], res, math.nan)


def candidate_labels(banks: dict[str, WarpLineBank]) -> list[str]:
    """``name[k]`` for every candidate of ``banks``, in order (the order of :func:`candidate_curves`)."""
    return [f"{name}[{k}]" for name, bank in banks.items() for k in range(bank.count)]


def candidate_curves(banks: dict[str, WarpLineBank], *, x: Tensor, grid: Tensor) -> Tensor:
    """Every candidate of ``banks`` (one set, in :func:`candidate_labels` order) at every context
    of ``grid`` over the points ``x`` ``(N,)``, in float64: ``(C, G, N)``."""
    x, grid = x.double(), grid.double()
    return torch.cat([bank.on_grid(x[None], grid)[:, :, 0] for bank in banks.values()])


@dataclass(frozen=True)
class BankOverlap:
    """``shared[a][b]``: how many of candidate ``a``'s ``contexts`` curves some curve of candidate
    ``b`` reproduces to within ``threshold`` of its variance; ``labels`` name the candidates."""

    labels: tuple[str, ...]
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
        within = f"within {100 * self.threshold:g}% of the curve's variance"
        if not self.pairs():
            return (f"{name}: no candidate reproduces a curve of another ({len(self.labels)} "
                    f"candidates, {self.contexts} contexts each, {within})")  # fmt: skip
        said = "; ".join(f"{self.labels[b]} reproduces {n} of {self.labels[a]}'s "
                         f"{self.contexts} curves" for a, b, n in self.pairs())  # fmt: skip
        return f"{name}: {said} ({within}): a task there fits either equally well"

    def to_json(self) -> dict:
        return {"labels": list(self.labels), "shared": [list(r) for r in self.shared],
                "contexts": self.contexts, "threshold": self.threshold,
                "fraction": self.fraction}  # fmt: skip


@torch.no_grad()
def bank_overlap(banks: dict[str, WarpLineBank], *, x: Tensor, grid: Tensor, offset: bool,
                 threshold: float = THRESHOLD) -> BankOverlap:  # fmt: skip
    """Which candidates of ``banks`` (one set of candidates ``name[k]``, in the dict's order)
    reproduce another's curves, each read at every context of ``grid`` over the points ``x``
    ``(N,)``, in float64."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold={threshold}: must be in (0, 1)")
    labels, h = candidate_labels(banks), candidate_curves(banks, x=x, grid=grid)
    shared = []
    for a in range(len(h)):
        row = []
        for b in range(len(h)):
            best = residual_fraction(h[a], h[b], offset=offset).amin(1)  # nan stays nan
            row.append(0 if a == b else int((best < threshold).sum()))
        shared.append(tuple(row))
    return BankOverlap(labels=tuple(labels), shared=tuple(shared), contexts=len(grid),
                       threshold=threshold)  # fmt: skip


def learner_overlap(learner: AnnealedSumLearner, *, low: float, high: float,
                    threshold: float = THRESHOLD) -> BankOverlap | None:  # fmt: skip
    """:func:`bank_overlap` of the kept replica's candidates on ``[low, high]`` (the tasks'
    inputs) at the learner's evaluation grid: the sum's two banks as one set (``f[k]``,
    ``g[k]``), or its one shared bank (``bank[k]``). ``None`` for the chain, whose terms are not
    fitted side by side (g reads f's output, so two f-candidates alike up to a scale are not alike
    to g), and for uniform routing, which reads no single candidate."""
    if not low < high:
        raise ValueError(f"the input range [{low}, {high}] is empty")
    if learner.structure != "sum" or learner.routing == "uniform":
        return None
    x = torch.linspace(low, high, POINTS, dtype=torch.float64)
    r = learner.kept
    banks = ({"bank": learner.f_banks[r]} if learner.shared
             else {"f": learner.f_banks[r], "g": learner.g_banks[r]})  # fmt: skip
    return bank_overlap(banks, x=x, grid=learner.eval_grid, offset=learner.offset,
                        threshold=threshold)  # fmt: skip


__all__ = [
    "FLAT",
    "POINTS",
    "THRESHOLD",
    "BankOverlap",
    "bank_overlap",
    "learner_overlap",
    "residual_fraction",
]
