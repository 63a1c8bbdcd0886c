"""A cross-fitted term for the annealed sum (a pilot, docs/router.md): pairs are chosen on each
task's support points and scored on its query points in meta-training, as evaluation does.

The annealed objective fits every pair on all of a task's points, so nothing in it asks that the
right pair be *recognisable* from the support set alone: two candidates that fit the same 25 points
can fit 10 support points equally well and predict the rest differently, and evaluation, which
routes on the support set, then picks either. Here each pair's amplitudes are fitted on the
support points only, and the term is the query MSE of those fits, weighed by the support fits'
soft-min posterior ``softmax(-support MSE / tau)``: the expected query error of routing on the
support set at temperature ``tau``. Its gradient raises the support fit of pairs that would be
picked and predict badly, and lowers that of the pairs that predict well."""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def support_query_mse(
    f: Tensor, g: Tensor, y: Tensor, *, support: int, ridge: float = 1e-4, offset: bool = True
) -> tuple[Tensor, Tensor, Tensor]:
    """Every pair ``y ~ a f_i + b g_j + c`` (``offset=False``: no ``c``) fitted on the first
    ``support`` points of each task (least squares, the ridge on ``a`` and ``b`` only, as :func:`~metacompose.algorithms.pair_fit.
    pair_fit_mse`), scored there and on the remaining points.

    Args:
        f: ``(A, T, N)``; g: ``(B, T, N)``; y: ``(T, N)``, the support points first.

    Returns:
        ``(A, B, T)`` each: the support MSE, the query MSE (both by expanding the square over
        sums of products: no ``(A, B, T, N)`` residual is formed; a badly conditioned fit loses
        precision there, which :func:`cross_fit_term`'s amplitude limit and cap contain) and
        the larger of ``|a|`` and ``|b|``.
    """
    k = support
    if not 0 < k < y.shape[-1]:
        raise ValueError(f"support={k}: must leave query points among {y.shape[-1]}")
    mf, mg, my = (v[..., :k].mean(-1, keepdim=True) * offset for v in (f, g, y))
    fc, gc, yc = f - mf, g - mg, y - my  # centred on the support means, all points
    fs, gs, ys = fc[..., :k], gc[..., :k], yc[..., :k]
    sff = (fs * fs).sum(-1)[:, None] + ridge  # (A, 1, T)
    sgg = (gs * gs).sum(-1)[None] + ridge  # (1, B, T)
    sfg = torch.einsum("atn,btn->abt", fs, gs)
    sfy, sgy = (fs * ys).sum(-1)[:, None], (gs * ys).sum(-1)[None]
    det = sff * sgg - sfg**2
    a = (sgg * sfy - sfg * sgy) / det
    b = (sff * sgy - sfg * sfy) / det
    rss = (ys * ys).sum(-1) - 2 * (a * sfy + b * sgy) + a**2 * (sff - ridge) + 2 * a * b * sfg
    rss = rss + b**2 * (sgg - ridge)
    fq, gq, yq = fc[..., k:], gc[..., k:], yc[..., k:]  # the query's sums, the same expansion
    qfg = torch.einsum("atn,btn->abt", fq, gq)
    qfy, qgy = (fq * yq).sum(-1)[:, None], (gq * yq).sum(-1)[None]
    qff, qgg = (fq * fq).sum(-1)[:, None], (gq * gq).sum(-1)[None]
    qss = (yq * yq).sum(-1) - 2 * (a * qfy + b * qgy) + a**2 * qff + 2 * a * b * qfg + b**2 * qgg
    query = qss.clamp_min(0.0) / yq.shape[-1]
    return rss.clamp_min(0.0) / k, query, torch.maximum(a.abs(), b.abs())


def cross_fit_term(
    f: Tensor, g: Tensor, y: Tensor, *, support: int, tau: float, ridge: float,
    limit: Tensor | float, cap: float = 4.0, offset: bool = True,
) -> Tensor:  # fmt: skip
    """``(T,)``: each task's expected query MSE when its pair is drawn from the support fits'
    posterior ``softmax(-support MSE / tau)`` over every pair of ``f`` ``(A, T, N)`` and ``g``
    ``(B, T, N)``. Fits whose larger amplitude exceeds ``limit`` take no share (as at
    evaluation; a task with none admissible admits all); each query MSE is capped at ``cap``
    times the query points' variance, so a wild fit pushes its pair away without swamping the
    rest."""
    fits = support_query_mse(f, g, y, support=support, ridge=ridge, offset=offset)
    s, q, amp = (v.flatten(0, 1) for v in fits)
    ok = amp <= limit
    s = torch.where(ok | ~ok.any(0, keepdim=True), s, torch.inf)
    yq = y[:, support:]
    top = cap * (yq - yq.mean(-1, keepdim=True)).pow(2).mean(-1).clamp_min(1e-8)
    q = torch.minimum(q, top)
    return (torch.softmax(-s / tau, 0) * q).sum(0)


def cross_fit_banks(
    f_bank, g_bank, x: Tensor, y: Tensor, *, support: int, tau: float, ridge: float,
    limit: Tensor | float, offset: bool = True,
) -> Tensor:  # fmt: skip
    """:func:`cross_fit_term` for two :class:`~metacompose.modules.warp_line.WarpLineBank` read at
    every context of their own grid; ``x``, ``y`` ``(T, N)``, the support points first. A ``limit``
    that is not finite (no meta-batch seen yet) admits every fit."""
    hf = f_bank.on_grid(x, f_bank.grid(x.dtype)).flatten(0, 1)
    hg = g_bank.on_grid(x, g_bank.grid(x.dtype)).flatten(0, 1)
    limit = float(limit) if torch.isfinite(torch.as_tensor(limit)) else torch.inf
    return cross_fit_term(hf, hg, y, support=support, tau=tau, ridge=ridge, limit=limit,
                          offset=offset)  # fmt: skip


def check_cross_fit(weight: float, *, sum_of_two: bool, routing: str) -> None:
    """``cross_fit`` (the term's weight) is finite and >= 0, and > 0 only for the sum with two
    banks routed from data (the chain, a shared bank and descriptor routing have no such choice)."""
    if not (math.isfinite(weight) and weight >= 0):
        raise ValueError(f"cross_fit={weight}: must be finite and >= 0")
    if weight and not (sum_of_two and routing == "data"):
        raise ValueError(f"cross_fit={weight}: only for the sum with two banks routed from data")
