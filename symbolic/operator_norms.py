"""Sound float upper bounds on matrix operator norms (L2 spectral norm, Linf max row sum)."""

from __future__ import annotations

import torch

from metacompose.symbolic.linear_bounds import UNIT_ROUNDOFF, fp_error

NORMS = ("l2", "linf")


def operator_norm_upper(w: torch.Tensor, norm: str) -> float:
    """An upper bound on ``||w||`` as an operator ``norm -> norm`` for ``w`` of shape ``(m, n)``.

    ``linf``: the maximum absolute row sum, plus its summation error. ``l2``: the largest singular
    value from an SVD, plus ``10 * max(m, n) * u * ||w||_F`` (backward-stable SVD computes the exact
    singular values of ``w + E`` with ``||E||_2 <= p(n) u ||w||``; Weyl's inequality then moves
    each singular value by at most ``||E||_2``), capped by the always-valid ``sqrt(||w||_1 ||w||_inf)``.
    Returns ``nan`` if ``w`` is not finite.
    """
    w = w.to(torch.float64)
    if not bool(torch.isfinite(w).all()):
        return float("nan")
    if w.numel() == 0:
        return 0.0
    row = w.abs().sum(1)
    linf = float((row + fp_error(row, w.shape[1])).max())
    if norm == "linf":
        return linf
    if norm != "l2":
        raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
    col = w.abs().sum(0)
    l1 = float((col + fp_error(col, w.shape[0])).max())
    holder = (l1 * linf) ** 0.5 * (1 + 4 * UNIT_ROUNDOFF)
    sigma = float(torch.linalg.matrix_norm(w, ord=2))
    fro = float(torch.linalg.matrix_norm(w, ord="fro"))
    svd_up = sigma * (1 + 16 * UNIT_ROUNDOFF) + 10 * max(w.shape) * UNIT_ROUNDOFF * fro * 1.01
    return min(svd_up, holder)
