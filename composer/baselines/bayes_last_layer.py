"""ALPaCA (Harrison, Sharma and Pavone 2018): Bayesian linear regression on meta-learned features.

Each task is ``y = w' phi(x) + eps``, ``eps ~ N(0, sigma^2)``, with one prior
``w ~ N(mu0, S0)`` shared by every task. The features ``phi(x) = [1, x, g(x)]`` keep the raw
inputs next to a small network ``g``, so the prior contains the linear mixed model with random
intercepts and slopes (``mu0``: the fixed effects, ``S0``: the random effects' covariance) and
reaches beyond it through ``g``; ``mu0`` carries the population trend a task reverts to, ``S0``
(full rank, ``L L'``) how tasks vary around it. A new task is predicted by the exact posterior
given its K support rows.

In function space this is a GP with mean ``mu0' phi(x)`` and kernel ``phi(x)' S0 phi(x')``, so
the exact algebra is :func:`metacompose.baselines.deep_kernel.gp_posterior` and
:func:`~metacompose.baselines.deep_kernel.gp_log_marginal` on ``K x K`` matrices. Meta-training
maximises ALPaCA's objective, the log predictive density of a meta-train task's query rows given
its support rows, ``log p(y_q | y_s) = log p(y_s, y_q) - log p(y_s)``, exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from metacompose.algorithms import MetaStep
from metacompose.baselines.deep_kernel import (
    NOISE_FLOOR,
    PosteriorLearner,
    gp_log_marginal,
    gp_posterior,
    mlp_features,
)
from metacompose.tasks.base import TaskBatch


class BayesLastLayer(PosteriorLearner):
    """ALPaCA: a Bayesian last layer on ``[1, x, g(x)]``; ``meta_step`` and ``evaluate`` like a
    learner.

    Args:
        in_features: D, the inputs' width.
        hidden: widths of ``g`` (a ReLU network, :func:`mlp_features`); its last width is added
            to the ``1 + D`` raw features.
        seed: initialises ``g``.
        noise: initial ``sigma^2`` (standardised targets: 0.1).
        prior_scale: initial standard deviation of the raw features' weights (that of ``g``'s is a
            tenth of it), so training starts near a random intercepts and slopes model.
    """

    def __init__(
        self, *, in_features: int, hidden: tuple[int, ...] = (40, 40), seed: int = 0,
        noise: float = 0.1, prior_scale: float = 1.0,
    ) -> None:  # fmt: skip
        super().__init__()
        if in_features < 1 or noise <= NOISE_FLOOR or prior_scale <= 0:
            raise ValueError(
                f"in_features must be >= 1, noise > {NOISE_FLOOR} and prior_scale > 0; got "
                f"{in_features}, {noise}, {prior_scale}"
            )
        self.g = mlp_features(in_features, hidden, seed=seed)
        raw = 1 + in_features
        width = raw + (hidden[-1] if hidden else in_features)
        self.prior_mean = nn.Parameter(torch.zeros(width))
        self.chol_lower = nn.Parameter(torch.zeros(width, width))  # strictly lower part of L
        scale = torch.full((width,), math.log(prior_scale / 10))
        scale[:raw] = math.log(prior_scale)
        self.log_chol_diag = nn.Parameter(scale)
        self.raw_noise = nn.Parameter(torch.tensor(math.log(math.expm1(noise - NOISE_FLOOR))))

    @property
    def noise(self) -> torch.Tensor:
        return F.softplus(self.raw_noise) + NOISE_FLOOR

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(T, n, D)`` inputs -> ``(T, n, 1 + D + G)`` features ``[1, x, g(x)]``, float64."""
        one = torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)
        return torch.cat([one, x, self.g(x)], -1).double()

    def chol(self) -> torch.Tensor:
        """``L`` (lower triangular, positive diagonal) with ``S0 = L L'``, float64."""
        lower = torch.tril(self.chol_lower, diagonal=-1)
        return (lower + torch.diag(self.log_chol_diag.exp())).double()

    def _moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prior mean ``(T, n)`` and ``phi L`` ``(T, n, W)`` (the kernel is its outer product)."""
        phi = self.features(x)
        return phi @ self.prior_mean.double(), phi @ self.chol()

    def meta_step(self, batch: TaskBatch, *, step: int = 0) -> MetaStep:
        """Negative log predictive density per query row given the support rows."""
        x = torch.cat([batch.support_x, batch.query_x], 1)
        y = torch.cat([batch.support_y, batch.query_y], 1).flatten(1).double()
        mean, a = self._moments(x)
        k, noise, n_s = a @ a.transpose(-1, -2), self.noise.double(), batch.support_x.shape[1]
        joint = gp_log_marginal(k, y, noise=noise, mean=mean)
        support = gp_log_marginal(k[:, :n_s, :n_s], y[:, :n_s], noise=noise, mean=mean[:, :n_s])
        nll = -(joint - support) / (y.shape[1] - n_s)
        return MetaStep(objective=nll.mean(), query_loss=nll)

    @torch.no_grad()
    def predict(self, batch: TaskBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and latent variance at the query points: ``(T, Q)`` each, float64."""
        m_s, a_s = self._moments(batch.support_x)
        m_q, a_q = self._moments(batch.query_x)
        mean, var = gp_posterior(a_s @ a_s.transpose(-1, -2), a_q @ a_s.transpose(-1, -2),
                                 a_q.pow(2).sum(-1), batch.support_y.flatten(1).double() - m_s,
                                 noise=self.noise.double(), mean=0.0)  # fmt: skip
        return m_q + mean, var
