"""Closed-form amplitudes of the sum structure for every pair of candidates at once.

For the sum ``y = a f(x) + b g(x) + c`` the best amplitudes ``(a, b, c)`` of a task, given the
two candidates' outputs on its support set, solve a 3 x 3 (ridge) least-squares problem. Solving
it for every (f-candidate, g-candidate) pair from the candidates' Gram entries makes the E-step
over all pairs exact and vectorised: a wrong pair cannot absorb its error into the amplitudes,
since the amplitudes are already the best ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass
class PairFits:
    """Least-squares fits of every pair.

    Attributes:
        weights: ``(A, B, T, 3)``: ``(a, b, c)`` of pair ``(i, j)`` on task ``t``.
        loss: ``(A, B, T)``: the support MSE of that fit (without the ridge term).
    """

    weights: Tensor
    loss: Tensor


def pair_least_squares(f: Tensor, g: Tensor, y: Tensor, *, ridge: float = 0.0) -> PairFits:
    """Ridge least squares of ``y ~ a f_i + b g_j + c`` for every ``(i, j)`` and task.

    Args:
        f: ``(A, T, N)``: the outputs of A slot-f candidates on each task's N support inputs.
        g: ``(B, T, N)``: the same for B slot-g candidates.
        y: ``(T, N)``: the support targets.
        ridge: ``lambda`` of ``||y - F w||^2 + lambda ||w||^2`` (0: plain least squares; the
            three features must then be linearly independent).

    Returns:
        :class:`PairFits` with ``A x B x T`` fits.
    """
    n = y.shape[-1]
    ff, gg = (f * f).sum(-1), (g * g).sum(-1)  # (A, T), (B, T)
    fg = torch.einsum("atn,btn->abt", f, g)
    shape = fg.shape
    gram = torch.zeros(*shape, 3, 3, dtype=y.dtype, device=y.device)
    gram[..., 0, 0] = ff[:, None]
    gram[..., 1, 1] = gg[None]
    gram[..., 2, 2] = n
    gram[..., 0, 1] = gram[..., 1, 0] = fg
    gram[..., 0, 2] = gram[..., 2, 0] = f.sum(-1)[:, None]
    gram[..., 1, 2] = gram[..., 2, 1] = g.sum(-1)[None]
    rhs = torch.stack(
        [
            (f * y).sum(-1)[:, None].expand(shape),
            (g * y).sum(-1)[None].expand(shape),
            y.sum(-1).expand(shape),
        ],
        dim=-1,
    )
    eye = torch.eye(3, dtype=y.dtype, device=y.device)
    w = torch.linalg.solve(gram + ridge * eye, rhs[..., None])[..., 0]
    # ||y - F w||^2 = y.y - 2 w.F'y + w'(F'F)w, from the Gram entries alone
    sq = (y * y).sum(-1) - 2 * (w * rhs).sum(-1) + (w * (gram @ w[..., None])[..., 0]).sum(-1)
    return PairFits(weights=w, loss=sq.clamp_min(0.0) / n)


def fit_one_pair(f: Tensor, g: Tensor, y: Tensor, *, ridge: float = 0.0) -> Tensor:
    """``(T, 3)`` amplitudes of one chosen pair per task (``f``, ``g``, ``y``: ``(T, N)``);
    differentiable, the M-step's fit."""
    design = torch.stack([f, g, torch.ones_like(f)], dim=-1)  # (T, N, 3)
    gram = design.transpose(1, 2) @ design
    eye = torch.eye(3, dtype=y.dtype, device=y.device)
    return torch.linalg.solve(gram + ridge * eye, design.transpose(1, 2) @ y[..., None])[..., 0]


def predict(w: Tensor, f: Tensor, g: Tensor) -> Tensor:
    """``a f + b g + c`` of amplitudes ``w`` ``(..., 3)`` on outputs ``f``, ``g`` ``(..., N)``."""
    return w[..., 0:1] * f + w[..., 1:2] * g + w[..., 2:3]


def best_contexts(loss: Tensor, contexts: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per candidate pair and task, the context pair with the lowest loss.

    Args:
        loss: ``(C * G, D * G, T)``: the fit of candidate ``i`` at context ``k`` (row
            ``i * G + k``) with candidate ``j`` at context ``l`` (column ``j * G + l``).
        contexts: G.

    Returns:
        ``(k, l, best)``, each ``(C, D, T)``: the contexts and their loss.
    """
    a, b, t = loss.shape
    c, d, gsz = a // contexts, b // contexts, contexts
    grid = loss.view(c, gsz, d, gsz, t).permute(0, 2, 4, 1, 3).reshape(c, d, t, gsz * gsz)
    best, flat = grid.min(dim=-1)
    return flat // gsz, flat % gsz, best
