"""Each pair's contexts refined below the grid's resolution by a local coordinate search.

A candidate is read at a per-task context on a grid (15 points in meta-training). For most
shapes the grid's error is small, but a discontinuous one pays dearly: a saw read at the nearest of
15 phases leaves about 20% of its variance unexplained (7% at 41, the evaluation grid), so two
candidates sharing its phases fit the tasks much better than one. Annealing then *prefers*
splitting such a primitive over two candidates, and to free one it merges two other primitives
into one (docs/router.md). Refining each pair's best grid contexts shrinks that error, so one
candidate per primitive is the better fit again.

The search: starting from each pair's best grid contexts, ``rounds`` times, try ``points`` offsets
evenly over plus or minus the current resolution, first for f's context and then for g's, keep
the best; each round divides the resolution by ``(points - 1) / 2``. The offset 0 is always tried,
so a refined fit is never worse than its start, and a fit past the amplitude limit is never
taken in place of one within it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from metacompose.algorithms.pair_fit import matched_fit_mse

Tensor = torch.Tensor
# (cf, cg) contexts (C, D, T, *P), broadcastable -> the two curves at them, (C, D, T, *P, N)
PairReader = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def best_on_grid(mse: Tensor, grid: Tensor) -> tuple[Tensor, Tensor]:
    """Each pair's best contexts on ``grid`` (G,): ``mse`` ``(C G, D G, T)`` (candidate-major,
    as :meth:`AnnealedSumLearner._pair_mse`) -> ``cf``, ``cg`` ``(C, D, T)``."""
    n = len(grid)
    c, d, t = mse.shape[0] // n, mse.shape[1] // n, mse.shape[2]
    at = mse.reshape(c, n, d, n, t).permute(0, 2, 4, 1, 3).flatten(3).argmin(-1)
    return grid[at // n], grid[at % n]


@torch.no_grad()
def refine_contexts(
    read: PairReader,
    y: Tensor,
    cf: Tensor,
    cg: Tensor,
    *,
    step: float,
    rounds: int,
    ridge: float,
    limit: Tensor | float = math.inf,
    points: int = 9,
    offset: bool = True,
) -> tuple[Tensor, Tensor]:
    """The contexts ``cf``, ``cg`` ``(C, D, T)`` (each pair's start, in ``[-1, 1]``) refined by
    ``rounds`` rounds of coordinate search (see the module docstring).

    Args:
        read: the curves of every pair at given contexts.
        y: ``(T, N)`` the tasks' targets.
        step: the grid's spacing (the first round's resolution).
        limit: the largest amplitude a fit may use, a number or ``(T,)`` per task.
        points: offsets tried per coordinate and round (odd, >= 3).
        offset: the fit has an offset ``c`` (:func:`~metacompose.algorithms.pair_fit.pair_fit_mse`).
    """
    if points < 3 or points % 2 == 0:
        raise ValueError(f"points={points}: must be odd and >= 3")
    limit = torch.as_tensor(limit, dtype=y.dtype, device=y.device)
    limit = limit[:, None] if limit.dim() == 1 else limit  # (T, 1) against (C, D, T, P)
    h = float(step)
    for _ in range(rounds):
        offsets = torch.linspace(-h, h, points, dtype=cf.dtype, device=cf.device)
        for slot in ("f", "g"):
            moved = cf if slot == "f" else cg
            trial = (moved[..., None] + offsets).clamp(-1.0, 1.0)
            other = (cg if slot == "f" else cf)[..., None]  # (C, D, T, 1): read once
            hf, hg = read(trial, other) if slot == "f" else read(other, trial)
            mse, amp = matched_fit_mse(hf, hg, y[:, None, :], ridge=ridge, offset=offset)
            mse = torch.where(amp <= limit, mse, math.inf)
            best = mse.argmin(-1)
            best = torch.where(torch.isinf(mse).all(-1), points // 2, best)  # none admissible
            moved = trial.gather(-1, best[..., None])[..., 0]
            cf, cg = (moved, cg) if slot == "f" else (cf, moved)
        h = h * 2 / (points - 1)
    return cf, cg
