"""The statistician's baseline: a linear mixed model with random intercepts and slopes per group.

For the rows ``i`` of group ``g`` with design ``x_gi = [1, features]`` (p = D + 1 columns)::

    y_gi = x_gi' (beta + b_g) + e_gi,    b_g ~ N(0, Sigma),    e_gi ~ N(0, sigma^2).

**Fit** (on every row of the meta-train groups): the likelihood is profiled as in lme4 (Bates et
al. 2015). With ``Sigma = sigma^2 L L'`` (L lower triangular, p x p) the GLS estimate of ``beta``
and of ``sigma^2`` are closed-form given L, so only the p(p+1)/2 entries of L are optimised
(L-BFGS, float64). Everything is computed from each group's Gram matrix ``[X y]'[X y]`` with
``M_g = I + L' X_g'X_g L`` (Woodbury / Sylvester):

    A = sum_g X'V_g^-1 X,  c = sum_g X'V_g^-1 y,  d = sum_g y'V_g^-1 y    (V_g / sigma^2 factored out)
    beta = A^-1 c,  RSS = d - c'beta
    ML:   -2 loglik = N (1 + log(2 pi RSS / N)) + sum_g log|M_g|
    REML: -2 loglik = (N - p)(1 + log(2 pi RSS / (N - p))) + sum_g log|M_g| + log|A| - log|X'X|

**Predict** a new task (empirical Bayes): the posterior mean (BLUP) of its random effects from its
K support rows, ``b = Sigma X_s' (X_s Sigma X_s' + sigma^2 I)^-1 (y_s - X_s beta)``, then
``y_q = X_q (beta + b)``. Tested against a brute-force optimisation of the dense likelihood
(tests/composer/baselines/test_mixed_effects.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from metacompose.tasks.base import TaskBatch


@dataclass(frozen=True)
class MixedModelFit:
    """Estimates of a linear mixed model (float64).

    Attributes:
        beta: ``(p,)`` fixed effects, intercept first.
        cov: ``(p, p)`` covariance Sigma of the random effects.
        noise: sigma^2, the residual variance.
        log_likelihood: the maximised (REML or ML) log-likelihood.
        reml: whether it is the REML fit.
    """

    beta: torch.Tensor
    cov: torch.Tensor
    noise: float
    log_likelihood: float
    reml: bool


def design(x: torch.Tensor) -> torch.Tensor:
    """``(..., n, D)`` features -> ``(..., n, D + 1)`` float64 design ``[1, x]``."""
    x = x.double()
    return torch.cat([torch.ones_like(x[..., :1]), x], -1)


def group_grams(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-group Gram matrices of ``[X y]`` over the rows where ``mask`` is true.

    Args:
        x: ``(G, n, D)`` padded features; y: ``(G, n)`` targets; mask: ``(G, n)`` real rows.

    Returns:
        ``(G, p + 1, p + 1)`` float64 with ``p = D + 1``.
    """
    xy = torch.cat([design(x), y.double()[..., None]], -1) * mask.double()[..., None]
    return xy.transpose(-1, -2) @ xy


def _lower(theta: torch.Tensor, p: int) -> torch.Tensor:
    rows, cols = torch.tril_indices(p, p)
    return torch.zeros(p, p, dtype=theta.dtype).index_put((rows, cols), theta)


def profiled_deviance(
    theta: torch.Tensor, grams: torch.Tensor, n_rows: int, *, reml: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``-2 loglik`` profiled over beta and sigma^2, given the relative factor L.

    Args:
        theta: the p(p+1)/2 entries of the lower-triangular L (row-major), ``Sigma = sigma^2 LL'``.
        grams: ``(G, p + 1, p + 1)`` from :func:`group_grams`.
        n_rows: N, the rows behind ``grams``.

    Returns:
        ``(deviance, beta (p,), sigma^2)``.
    """
    p = grams.shape[-1] - 1
    lam = _lower(theta, p)
    xtx, xty, yty = grams[:, :p, :p], grams[:, :p, p], grams[:, p, p]
    u = lam.T @ xtx  # (G, p, p): L' X'X
    w = (lam.T @ xty[..., None])[..., 0]  # (G, p): L' X'y
    chol = torch.linalg.cholesky(torch.eye(p, dtype=grams.dtype) + u @ lam)  # M_g = I + L'X'XL
    m_u = torch.cholesky_solve(u, chol)  # M^-1 L'X'X
    m_w = torch.cholesky_solve(w[..., None], chol)[..., 0]
    a = (xtx - u.transpose(-1, -2) @ m_u).sum(0)
    c = (xty - (u.transpose(-1, -2) @ m_w[..., None])[..., 0]).sum(0)
    d = (yty - (w * m_w).sum(-1)).sum(0)
    beta = torch.linalg.solve(a, c)
    rss = d - c @ beta
    logdet_m = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum()
    dof = n_rows - p if reml else n_rows
    sigma2 = rss / dof
    dev = dof * (1 + torch.log(2 * math.pi * sigma2)) + logdet_m
    if reml:  # the likelihood of the error contrasts K'y (K'K = I, K'X = 0)
        dev = dev + torch.linalg.slogdet(a)[1] - torch.linalg.slogdet(xtx.sum(0))[1]
    return dev, beta, sigma2


def fit_mixed_model(
    grams: torch.Tensor, n_rows: int, *, reml: bool = True, max_iter: int = 500
) -> MixedModelFit:
    """Maximise the (REML or ML) likelihood of a random-intercept-and-slopes model.

    Args:
        grams: ``(G, p + 1, p + 1)`` per-group Gram matrices (:func:`group_grams`).
        n_rows: the number of rows behind them.

    Raises:
        ValueError: the inputs are collinear over the groups' rows (the fixed effects are not
            identified: drop an input that is a combination of others).
        ArithmeticError: the optimum is not finite.
    """
    p = grams.shape[-1] - 1
    grams = grams.double()
    design = grams[:, :p, :p].sum(0)
    rank = int(torch.linalg.matrix_rank(design, hermitian=True))
    if rank < p:
        raise ValueError(f"mixed model: the {p} fixed effects (intercept and inputs) have rank "
                         f"{rank} over the meta-train rows: some inputs are collinear")  # fmt: skip
    theta = _lower_entries(torch.eye(p, dtype=torch.float64)).requires_grad_(True)
    opt = torch.optim.LBFGS([theta], max_iter=max_iter, tolerance_grad=1e-10,
                            tolerance_change=1e-14, history_size=20,
                            line_search_fn="strong_wolfe")  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        dev = profiled_deviance(theta, grams, n_rows, reml=reml)[0]
        dev.backward()
        return dev

    opt.step(closure)
    with torch.no_grad():
        dev, beta, sigma2 = profiled_deviance(theta, grams, n_rows, reml=reml)
        lam = _lower(theta, p)
    if not torch.isfinite(dev):
        raise ArithmeticError(f"mixed model: deviance {float(dev)} at the optimum")
    return MixedModelFit(beta=beta, cov=float(sigma2) * lam @ lam.T, noise=float(sigma2),
                         log_likelihood=-0.5 * float(dev), reml=reml)  # fmt: skip


def _lower_entries(m: torch.Tensor) -> torch.Tensor:
    rows, cols = torch.tril_indices(m.shape[0], m.shape[0])
    return m[rows, cols].clone()


def blup(fit: MixedModelFit, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Posterior mean of each task's random effects given its support rows.

    Args:
        x: ``(T, K, D)`` support features; y: ``(T, K, 1)`` or ``(T, K)`` targets.

    Returns:
        ``(T, p)`` float64: ``Sigma X' (X Sigma X' + sigma^2 I)^-1 (y - X beta)``.
    """
    xd = design(x)
    r = y.double().reshape(xd.shape[:2]) - xd @ fit.beta
    v = xd @ fit.cov @ xd.transpose(-1, -2) + fit.noise * torch.eye(xd.shape[1], dtype=xd.dtype)
    return (fit.cov @ xd.transpose(-1, -2) @ torch.linalg.solve(v, r[..., None]))[..., 0]


def predict(
    fit: MixedModelFit, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor
) -> torch.Tensor:
    """``(T, Q, 1)`` float64 predictions ``X_q (beta + b)`` with ``b`` the support BLUP."""
    coef = fit.beta + blup(fit, support_x, support_y)  # (T, p)
    return (design(query_x) @ coef[..., None]).to(torch.float64)


def family_grams(family, split: str = "train") -> tuple[torch.Tensor, int]:
    """Gram matrices of every row of the ``split`` groups of a grouped family, and N."""
    idx = torch.as_tensor(family.group_splits[split]).long()
    data, lengths = family.data[idx], family.lengths[idx]
    mask = torch.arange(data.shape[1])[None] < lengths[:, None]
    return group_grams(data[..., :-1], data[..., -1], mask), int(lengths.sum())


class MixedEffectsLearner(nn.Module):
    """A fitted mixed model behind the ``evaluate(batch, steps=)`` interface of the learners.

    There is nothing to adapt step by step: every row of the returned curve is the query MSE of
    the empirical-Bayes prediction.
    """

    def __init__(self, *, fit: MixedModelFit) -> None:
        super().__init__()
        self.fit = fit

    @torch.no_grad()
    def predict_queries(self, batch: TaskBatch, *, steps: int = 0) -> torch.Tensor:
        """``(T, Q, 1)`` float64 empirical-Bayes predictions on the CPU (``steps`` is ignored)."""
        return predict(self.fit, batch.support_x.cpu(), batch.support_y.cpu(), batch.query_x.cpu())

    @torch.no_grad()
    def evaluate(self, batch: TaskBatch, *, steps: int | None = None) -> torch.Tensor:
        """Query MSE per task, ``(steps + 1, T)`` identical rows (``steps`` default 0)."""
        pred = self.predict_queries(batch)
        mse = ((pred - batch.query_y.cpu().double()) ** 2).flatten(1).mean(1)
        return mse.expand((steps or 0) + 1, -1).clone()
