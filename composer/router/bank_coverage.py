"""How well each candidate of a bank reproduces each true primitive across its parameter.

Label-aware, for a family whose primitives are known (the compositional sum): every candidate at
every context of a grid is fitted to the primitive's curve at several values of its parameter
(least squares, the amplitude and the offset when the learner fits one), and the best context's
residual, as a fraction of the curve's variance, is kept. The sum's two banks are one set of
candidates (either bank may hold either slot's primitives). Primitives are matched to candidates
one to one (the Hungarian algorithm on the mean of ``-log10`` residual). The table shows a
primitive whose matched candidate does not reach part of its parameter range, and a candidate
that holds a second primitive there. Its label-free counterpart is
:mod:`~metacompose.router.bank_overlap`; ``scripts/bank_coverage.py`` prints and draws both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from metacompose.modules.warp_line import WarpLineBank
from metacompose.router.bank_overlap import (
    THRESHOLD,
    candidate_curves,
    candidate_labels,
    residual_fraction,
)
from metacompose.router.metrics import linear_assignment
from metacompose.tasks.primitives import Primitive

Tensor = torch.Tensor


@dataclass(frozen=True)
class Coverage:
    """One primitive against every candidate: ``residual[c][i]`` and ``context[c][i]``, candidate
    ``c``'s lowest residual fraction over the grid at ``params[i]`` and the context giving it;
    ``params`` is ``(None,)`` for a primitive without a parameter."""

    name: str
    params: tuple[float | None, ...]
    residual: tuple[tuple[float, ...], ...]
    context: tuple[tuple[float, ...], ...]

    def reached(self, candidate: int, threshold: float = THRESHOLD) -> list[bool]:
        """Per parameter value: whether ``candidate`` reproduces the curve within ``threshold``."""
        return [r < threshold for r in self.residual[candidate]]

    def best(self) -> list[int]:
        """Per parameter value: the candidate with the lowest residual."""
        return [min(range(len(self.residual)), key=lambda c: self.residual[c][i])
                for i in range(len(self.params))]  # fmt: skip


@torch.no_grad()
def primitive_coverage(banks: dict[str, WarpLineBank], primitive: Primitive, name: str, *,
                       x: Tensor, grid: Tensor, params: int, offset: bool,
                       param_range: tuple[float, float] = (0.0, 1.0)) -> Coverage:  # fmt: skip
    """Every candidate of ``banks`` (:func:`candidate_labels` order) against ``primitive`` at
    ``params`` evenly spaced values of its parameter in ``param_range`` (one curve when it has
    none), over the points ``x`` ``(N,)``, in float64."""
    if params < 1:
        raise ValueError(f"params={params}: must be >= 1")
    x = x.double()
    lo, hi = param_range
    values = [None] if primitive.param is None else np.linspace(lo, hi, params).tolist()
    target = torch.stack([primitive(x, None if p is None else torch.tensor(p, dtype=x.dtype))
                          for p in values])  # fmt: skip
    h = candidate_curves(banks, x=x, grid=grid)
    residual, context = [], []
    for cand in h:  # (G, N)
        r = torch.nan_to_num(residual_fraction(target, cand, offset=offset), nan=math.inf)
        low, at = r.min(1)
        residual.append(tuple(low.tolist()))
        context.append(tuple(grid.double()[at].tolist()))
    return Coverage(name=name, params=tuple(values), residual=tuple(residual),
                    context=tuple(context))  # fmt: skip


def match(coverages: list[Coverage]) -> dict[str, int]:
    """Each primitive's candidate, one to one, maximising the summed mean ``-log10`` residual
    (floored at 1e-12 and capped at 1, so an unreached value counts 0)."""
    score = np.array([[np.mean([-math.log10(min(1.0, max(r, 1e-12))) for r in row])
                       for row in c.residual] for c in coverages])  # fmt: skip
    return {coverages[r].name: c for r, c in linear_assignment(score)}


def gaps(coverages: list[Coverage], matched: dict[str, int], labels: list[str], *,
         threshold: float = THRESHOLD) -> list[str]:  # fmt: skip
    """One line per primitive whose matched candidate misses some of its parameter values: how
    many it reaches, its worst residual, and the values another candidate reproduces instead (the
    sign of a candidate holding two primitives; a value no candidate reaches is a limit of the
    tables, not of the routing). ``labels`` name the candidates."""
    owner = {c: name for name, c in matched.items()}
    lines = []
    for cov in coverages:
        cand = matched.get(cov.name)
        if cand is None:
            lines.append(f"{cov.name}: no candidate matched (more primitives than candidates)")
            continue
        reached = cov.reached(cand, threshold)
        if all(reached):
            continue
        worst = max(range(len(cov.params)), key=lambda i: cov.residual[cand][i])
        line = (f"{cov.name} ({labels[cand]}): within {threshold:g} at {sum(reached)} of "
                f"{len(reached)} values, worst {cov.residual[cand][worst]:.4f} at {_p(cov, worst)}")  # fmt: skip
        held: dict[int, list[str]] = {}
        best = cov.best()
        for i, ok in enumerate(reached):
            other = best[i]
            if not ok and other != cand and cov.residual[other][i] < threshold:
                held.setdefault(other, []).append(_p(cov, i))
        for other, where in held.items():
            whose = f"{owner[other]}'s" if other in owner else "matched to none"
            line += f"; reproduced instead by {labels[other]} ({whose}) at {', '.join(where)}"
        lines.append(line)
    return lines


def _p(cov: Coverage, i: int) -> str:
    return "its one curve" if cov.params[i] is None else f"p={cov.params[i]:.2f}"


__all__ = ["Coverage", "candidate_labels", "gaps", "match", "primitive_coverage"]
