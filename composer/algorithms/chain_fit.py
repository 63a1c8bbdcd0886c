"""Closed-form fits of the chain ``y = a h(x) + c`` for many candidate compositions at once, where
``h = g(f(x))`` is already evaluated: the residual of every composition (centred, one amplitude)
and one composition's amplitude and offset."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def single_fit_mse(
    h: Tensor, y: Tensor, *, ridge: float = 1e-4, offset: bool = True
) -> tuple[Tensor, Tensor]:
    """The mean squared residual of ``y ~ a h + c`` at the least-squares ``a`` (ridge on ``a``
    only) and ``c`` (``offset=False``: ``y ~ a h``), and ``|a|``, for every curve of ``h``.

    Args:
        h: ``(..., T, N)`` curves; y: ``(T, N)`` targets.

    Returns:
        ``(..., T)`` MSE and ``(..., T)`` ``|a|``.
    """
    hc, yc = (v - v.mean(-1, keepdim=True) if offset else v for v in (h, y))
    shh = (hc * hc).sum(-1) + ridge
    shy = (hc * yc).sum(-1)
    a = shy / shh
    rss = (yc * yc).sum(-1) - 2 * a * shy + a**2 * (shh - ridge)
    return rss.clamp_min(0.0) / y.shape[-1], a.abs()


def fit_single(h: Tensor, y: Tensor, *, ridge: float = 1e-4, offset: bool = True) -> Tensor:
    """``(T, 3)`` coefficients ``(a, 0, c)`` of ``y ~ a h + c`` per task (the fit
    :func:`single_fit_mse` scores; the zero stands for the sum's second amplitude; ``offset=False``:
    ``c = 0``). ``h``, ``y``: ``(T, N)``."""
    hm, ym = (v.mean(-1, keepdim=True) * offset for v in (h, y))
    hc, yc = h - hm, y - ym
    a = (hc * yc).sum(-1, keepdim=True) / ((hc * hc).sum(-1, keepdim=True) + ridge)
    return torch.cat([a, torch.zeros_like(a), ym - a * hm], -1)
