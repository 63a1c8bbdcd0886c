"""Each task's true ``(f, g)`` pair read from its one-hot descriptor, masks that keep only that
pair's fits, its fits at every context pair, and its contexts refined below the grid: the descriptor-routed upper bound of the
annealed learner (:class:`~metacompose.algorithms.annealed_sum.AnnealedSumLearner`,
``routing="descriptor"``)."""

from __future__ import annotations

import math

import torch

from metacompose.algorithms.chain_fit import single_fit_mse
from metacompose.algorithms.context_refine import best_on_grid, refine_contexts
from metacompose.algorithms.pair_fit import pair_fit_mse
from metacompose.modules.warp_line import WarpLineBank

Tensor = torch.Tensor


def descriptor_pair(
    descriptor: Tensor | None, *, f_count: int, g_count: int
) -> tuple[Tensor, Tensor]:
    """Each task's true ``(f, g)``, ``(T,)`` each, from its one-hot descriptor ``(T, C + D)``
    (f's candidates first)."""
    if descriptor is None or descriptor.shape[-1] != f_count + g_count:
        width = "none" if descriptor is None else descriptor.shape[-1]
        raise ValueError(
            f"descriptor routing needs the one-hot (f, g) descriptor of width {f_count + g_count} "
            f"(task.args.descriptor: onehot); the tasks carry {width}"
        )
    return descriptor[:, :f_count].argmax(-1), descriptor[:, f_count:].argmax(-1)


def true_pair_rows(f: Tensor, g: Tensor, *, f_count: int, g_count: int, contexts: int) -> Tensor:
    """``(C G * D G, T)`` mask of the rows of a flattened ``(C G, D G, T)`` pair-fit tensor that
    belong to each task's true ``(f, g)`` (every context pair of it)."""
    t = torch.arange(len(f), device=f.device)
    mask = torch.zeros(
        f_count, contexts, g_count, contexts, len(f), dtype=torch.bool, device=f.device
    )
    mask[f, :, g, :, t] = True
    return mask.flatten(0, 3)


def true_pair_cells(f: Tensor, g: Tensor, *, f_count: int, g_count: int) -> Tensor:
    """``(C D, T)`` mask of each task's true ``(f, g)`` among the rows of a flattened
    ``(C, D, T)``."""
    mask = torch.zeros(f_count, g_count, len(f), dtype=torch.bool, device=f.device)
    mask[f, g, torch.arange(len(f), device=f.device)] = True
    return mask.flatten(0, 1)


def given_pair_fit(
    fb: WarpLineBank, gb: WarpLineBank, x: Tensor, y: Tensor, grid: Tensor, pair: list[Tensor],
    *, chain: bool, ridge: float, offset: bool = True,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Each task's given ``(f, g)`` (``pair``: two ``(T,)``) at every context pair of ``grid``
    fitted to ``x``, ``y`` ``(T, K)``: MSE and larger amplitude, ``(G G, T)``. ``chain``: the
    composition ``g(f(x))``, else the sum."""
    t = torch.arange(len(x), device=x.device)
    hf = fb.on_grid(x, grid)[pair[0], :, t].transpose(0, 1)  # (G, T, K)
    if chain:  # (D, G, G, T, K) -> the given g: (G, G, T, K)
        h = gb.on_grid(hf, grid)[pair[1], :, :, t].permute(2, 1, 0, 3)
        return tuple(v.flatten(0, 1) for v in single_fit_mse(h, y, ridge=ridge, offset=offset))
    hg = gb.on_grid(x, grid)[pair[1], :, t].transpose(0, 1)
    fits = pair_fit_mse(hf, hg, y, ridge=ridge, amplitudes=True, offset=offset)
    return tuple(v.flatten(0, 1) for v in fits)


def given_pair_refined(
    fb: WarpLineBank, gb: WarpLineBank, x: Tensor, y: Tensor, grid: Tensor, pair: list[Tensor],
    *, rounds: int, ridge: float, limit: float = math.inf, offset: bool = True,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Each task's given ``(f, g)`` of the sum (``pair``: two ``(T,)``) at its best admissible
    contexts on ``grid``, refined by ``rounds`` rounds of local search
    (:func:`~metacompose.algorithms.context_refine.refine_contexts`): ``cf``, ``cg`` ``(T,)``.
    Only the given pair is read and searched. A fit is admissible when its larger amplitude is at
    most ``limit``; a task whose pair has no admissible grid fit takes its best fit of any
    amplitude."""
    fit = {"ridge": ridge, "offset": offset}
    mse, amp = given_pair_fit(fb, gb, x, y, grid, pair, chain=False, **fit)  # (G G, T)
    admissible = amp <= limit
    per_task = amp.new_full(amp.shape[1:], limit).masked_fill(~admissible.any(0), math.inf)
    mse = torch.where(amp <= per_task, mse, math.inf)
    n = len(grid)
    cf, cg = best_on_grid(mse.view(n, n, -1), grid)  # one pair per task: (1, 1, T)
    t = torch.arange(len(x), device=x.device)

    def read(f_ctx: Tensor, g_ctx: Tensor) -> tuple[Tensor, Tensor]:
        # contexts (1, 1, T, *P) -> each task's own candidate, (1, 1, T, *P, N)
        xs = x.view(1, x.shape[0], *[1] * (f_ctx.dim() - 3), x.shape[1])
        out = []
        for bank, k, ctx in ((fb, pair[0], f_ctx), (gb, pair[1], g_ctx)):
            every = bank.read_at(xs, ctx.expand(bank.count, *ctx.shape[1:]))  # (count, 1, T, ..)
            out.append(every[k, 0, t][None, None])
        return out[0], out[1]

    step = 2.0 / max(1, n - 1)
    cf, cg = refine_contexts(read, y, cf, cg, step=step, rounds=rounds, limit=per_task, **fit)
    return cf[0, 0], cg[0, 0]
