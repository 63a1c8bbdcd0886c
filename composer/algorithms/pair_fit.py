"""Closed-form fits of the sum ``y = a f(x) + b g(x) + c`` (or, ``offset=False``, of ``y = a f(x) +
b g(x)``) for many candidate pairs at once: the
residual of every pair (centred, 2 x 2 normal equations by Cramer's rule) and one pair's
amplitudes, both on a subset of each task's points."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def pair_fit_mse(
    f: Tensor,
    g: Tensor,
    y: Tensor,
    *,
    weight: Tensor | None = None,
    ridge: float = 1e-4,
    amplitudes: bool = False,
    offset: bool = True,
) -> Tensor | tuple[Tensor, Tensor]:
    """The mean squared residual of ``y ~ a f_i + b g_j + c`` (``offset=False``: ``y ~ a f_i +
    b g_j``) for every ``(i, j)`` and task, on the points of ``weight`` (``(N,)`` of 0/1;
    ``None``: all), at the least-squares amplitudes.

    The same fit as :func:`metacompose.router.least_squares.pair_least_squares` (with the ridge on ``a`` and ``b`` only), but the
    offset is removed by centring and the 2 x 2 normal equations are solved by Cramer's rule, so a
    pair costs a few dot products and no solve: the cheap form for thousands of pairs. Without the
    offset nothing is centred; in float32 that loses precision when curves have a mean much
    larger than their spread (candidates' tables do not: about 0.03 against 0.17).

    Args:
        f: ``(A, T, N)``; g: ``(B, T, N)``; y: ``(T, N)``.

    Returns:
        ``(A, B, T)``; with ``amplitudes``, also the larger of ``|a|`` and ``|b|`` of every fit,
        ``(A, B, T)``.
    """
    w = torch.ones(y.shape[-1], dtype=y.dtype, device=y.device) if weight is None else weight
    total = w.sum()

    def centred(v: Tensor) -> Tensor:  # centring fits the offset c; without it, none
        return v - (v * w).sum(-1, keepdim=True) / total if offset else v

    fc, gc, yc = centred(f), centred(g), centred(y)
    sff = (fc * fc * w).sum(-1)[:, None] + ridge  # (A, 1, T)
    sgg = (gc * gc * w).sum(-1)[None] + ridge  # (1, B, T)
    sfg = torch.einsum("atn,btn->abt", fc * w, gc)
    sfy = (fc * yc * w).sum(-1)[:, None]
    sgy = (gc * yc * w).sum(-1)[None]
    syy = (yc * yc * w).sum(-1)
    det = sff * sgg - sfg**2
    a = (sgg * sfy - sfg * sgy) / det
    b = (sff * sgy - sfg * sfy) / det
    rss = syy - 2 * (a * sfy + b * sgy) + a**2 * (sff - ridge) + 2 * a * b * sfg
    rss = rss + b**2 * (sgg - ridge)
    mse = rss.clamp_min(0.0) / total
    return (mse, torch.maximum(a.abs(), b.abs())) if amplitudes else mse


def matched_fit_mse(
    f: Tensor, g: Tensor, y: Tensor, *, ridge: float = 1e-4, offset: bool = True
) -> tuple[Tensor, Tensor]:
    """:func:`pair_fit_mse` for matched rather than all pairs: ``f``, ``g``, ``y`` broadcast to
    ``(..., N)``; returns the MSE and the larger amplitude of each fit, ``(...)`` each."""
    n = y.shape[-1]
    fc, gc, yc = (v - v.mean(-1, keepdim=True) if offset else v for v in (f, g, y))
    sff = (fc * fc).sum(-1) + ridge
    sgg = (gc * gc).sum(-1) + ridge
    sfg, sfy, sgy = (fc * gc).sum(-1), (fc * yc).sum(-1), (gc * yc).sum(-1)
    syy = (yc * yc).sum(-1)
    det = sff * sgg - sfg**2
    a = (sgg * sfy - sfg * sgy) / det
    b = (sff * sgy - sfg * sfy) / det
    rss = syy - 2 * (a * sfy + b * sgy) + a**2 * (sff - ridge) + 2 * a * b * sfg
    rss = rss + b**2 * (sgg - ridge)
    return rss.clamp_min(0.0) / n, torch.maximum(a.abs(), b.abs())


def fit_pair_weighted(
    f: Tensor, g: Tensor, y: Tensor, *, weight: Tensor, ridge: float = 1e-4, offset: bool = True
) -> Tensor:
    """``(T, 3)`` amplitudes ``(a, b, c)`` of one pair per task fitted on the points of ``weight``
    (``(N,)`` of 0/1), the ridge on ``a`` and ``b`` only: the fit :func:`pair_fit_mse` scores.
    ``f``, ``g``, ``y``: ``(T, N)``. ``offset=False``: ``y ~ a f + b g``, ``c = 0``."""
    columns = [f, g, torch.ones_like(f)] if offset else [f, g]
    design = torch.stack(columns, dim=-1) * weight[:, None]  # (T, N, 3 or 2)
    ridges = torch.tensor([ridge, ridge, 0.0][: len(columns)], dtype=y.dtype, device=y.device)
    gram = design.transpose(1, 2) @ design + torch.diag(ridges)
    rhs = design.transpose(1, 2) @ (y * weight)[..., None]
    coef = torch.linalg.solve(gram, rhs)[..., 0]
    return coef if offset else torch.cat([coef, torch.zeros_like(coef[:, :1])], -1)
