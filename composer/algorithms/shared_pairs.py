"""One shared bank for both terms of the sum ``y = a f(x) + b g(x) + c``: a task's pair is one of
the ``C (C - 1) / 2`` unordered pairs of distinct candidates ``i < j``, so no primitive can be
held by both banks of a two-bank sum (an optimum annealing cannot leave by small steps;
docs/router.md). The helpers fit only those pairs on the grid and refine only their
contexts (:mod:`~metacompose.algorithms.context_refine`)."""

from __future__ import annotations

import math

import torch

from metacompose.algorithms.context_refine import best_on_grid, refine_contexts
from metacompose.algorithms.pair_fit import matched_fit_mse, pair_fit_mse
from metacompose.modules.warp_line import WarpLineBank

Tensor = torch.Tensor


def upper_pair_fit(
    h: Tensor, y: Tensor, *, ridge: float, offset: bool = True
) -> tuple[Tensor, Tensor]:
    """Every pair ``i < j`` of one bank's candidates at every context pair, fitted to ``y``
    ``(T, N)`` by :func:`~metacompose.algorithms.pair_fit.pair_fit_mse`; ``h``: the bank on its
    grid, ``(C, G, T, N)``. Only those ``C (C - 1) / 2`` blocks are fitted (less than half of all
    ``C^2``). Returns the MSE and the larger amplitude in candidate-major ``(C G, C G, T)``
    layout; any other row and column (``i >= j``): ``inf`` both, never a fit nor admissible."""
    c, g = h.shape[:2]
    rows = h.flatten(0, 1)
    mse = h.new_full((c * g, c * g, y.shape[0]), math.inf)
    amp = torch.full_like(mse, math.inf)
    for i in range(c - 1):
        block = pair_fit_mse(h[i], rows[(i + 1) * g :], y, ridge=ridge, amplitudes=True,
                             offset=offset)  # fmt: skip
        mse[i * g : (i + 1) * g, (i + 1) * g :], amp[i * g : (i + 1) * g, (i + 1) * g :] = block
    return mse, amp


def refine_upper_pairs(
    bank: WarpLineBank, x: Tensor, y: Tensor, grid_mse: Tensor, grid: Tensor, *, rounds: int,
    ridge: float, limit: Tensor | float = math.inf, offset: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """Each pair ``i < j`` of the shared ``bank`` at its best contexts on ``grid`` (``grid_mse``:
    the ``(C G, C G, T)`` fits of every pair on all points of ``x``, ``y`` ``(T, N)``), refined
    by ``rounds`` rounds of local search. Returns the MSE and larger amplitude (differentiable)
    and the contexts ``cf``, ``cg``, each ``(C, C, T)``; other pairs: MSE ``inf``, the rest 0."""
    c, t = bank.count, x.shape[0]
    i, j = torch.triu_indices(c, c, 1, device=x.device)
    cf, cg = best_on_grid(grid_mse, grid)
    cf, cg = cf[i, j][:, None], cg[i, j][:, None]  # (P, 1, T)

    def read(f_ctx: Tensor, g_ctx: Tensor) -> tuple[Tensor, Tensor]:
        xs = x.view(1, t, *[1] * (f_ctx.dim() - 3), x.shape[1])
        return bank.read_rows(xs, i, f_ctx), bank.read_rows(xs, j, g_ctx)

    step = 2.0 / max(1, len(grid) - 1)
    fit = {"ridge": ridge, "offset": offset}
    cf, cg = refine_contexts(read, y, cf, cg, step=step, rounds=rounds, limit=limit, **fit)
    mse, amp = matched_fit_mse(*read(cf, cg), y, **fit)  # (P, 1, T)
    out = []
    for value, fill in ((mse, math.inf), (amp, 0.0), (cf, 0.0), (cg, 0.0)):
        out.append(value.new_full((c, c, t), fill).index_put((i, j), value[:, 0]))
    return out[0], out[1], out[2], out[3]
