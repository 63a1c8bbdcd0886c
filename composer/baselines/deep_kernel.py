"""Deep kernel transfer (Patacchiola et al. 2020): one GP per task, its kernel meta-learned.

Each task is a Gaussian process with a constant mean ``m`` and the kernel
``k(x, x') = s^2 exp(-|phi(x) - phi(x')|^2 / (2 l^2))`` (``"rbf"``), ``s^2 phi(x)'phi(x')``
(``"linear"``) or their sum with two scales (``"rbf+linear"``, the default) on the features of a small network ``phi``, plus noise ``sigma^2``. The feature map
and the hyper-parameters ``(m, s, l, sigma)`` are shared by all tasks and trained by maximising
the marginal likelihood of every meta-train task's rows (support and query together), summed
over a meta-batch (:meth:`DeepKernelGP.meta_step`, through :func:`metacompose.baselines.meta_train`).
A new task is predicted by the exact GP posterior mean given its K support rows.

With ``mean_map`` the prior mean is a meta-learned function ``m + mu(x)`` of the inputs as well
(a deep mean function: Fortuin and Ratsch 2019; PACOH-GP, Rothfuss et al. 2021): the population
trend a task reverts to away from its support rows, which a constant mean cannot express.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from metacompose.algorithms import MetaStep
from metacompose.tasks.base import TaskBatch

Kernel = Literal["rbf", "linear", "rbf+linear"]
NOISE_FLOOR = 1e-4  # smallest sigma^2: keeps the Cholesky of K + sigma^2 I well conditioned


def kernel_matrix(
    a: torch.Tensor, b: torch.Tensor, *, kind: Kernel, lengthscale: torch.Tensor,
    outputscale: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """``(T, n, F)`` and ``(T, m, F)`` features -> ``(T, n, m)`` kernel values.

    ``outputscale``: ``s^2``; for ``"rbf+linear"`` a pair ``(s_rbf^2, s_lin^2)`` (a ``(2,)``
    tensor), the kernel being the sum of the two.
    """
    if kind == "rbf+linear":
        rbf = kernel_matrix(a, b, kind="rbf", lengthscale=lengthscale, outputscale=outputscale[0])
        return rbf + kernel_matrix(a, b, kind="linear", lengthscale=lengthscale,
                                   outputscale=outputscale[1])  # fmt: skip
    if kind == "linear":
        return outputscale * a @ b.transpose(-1, -2)
    sq = (a[..., :, None, :] - b[..., None, :, :]).pow(2).sum(-1)
    return outputscale * torch.exp(-0.5 * sq / lengthscale**2)


def gp_posterior(
    k_ss: torch.Tensor, k_qs: torch.Tensor, k_qq_diag: torch.Tensor, y_s: torch.Tensor,
    *, noise: torch.Tensor | float, mean: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Exact posterior of the latent function at the query points.

    Args:
        k_ss: ``(T, K, K)``; k_qs: ``(T, Q, K)``; k_qq_diag: ``(T, Q)``; y_s: ``(T, K)``.

    Returns:
        ``mean (T, Q) = m + K_qs (K_ss + sigma^2 I)^-1 (y_s - m)`` and
        ``var (T, Q) = diag(K_qq) - diag(K_qs (K_ss + sigma^2 I)^-1 K_sq)``.
    """
    eye = torch.eye(k_ss.shape[-1], dtype=k_ss.dtype, device=k_ss.device)
    chol = torch.linalg.cholesky(k_ss + noise * eye)
    alpha = torch.cholesky_solve((y_s - mean)[..., None], chol)[..., 0]
    v = torch.linalg.solve_triangular(chol, k_qs.transpose(-1, -2), upper=False)  # (T, K, Q)
    return mean + (k_qs @ alpha[..., None])[..., 0], k_qq_diag - v.pow(2).sum(-2)


def gp_log_marginal(
    k: torch.Tensor, y: torch.Tensor, *, noise: torch.Tensor | float, mean: torch.Tensor | float
) -> torch.Tensor:
    """``log N(y; m, K + sigma^2 I)`` per task: ``k`` ``(T, n, n)``, ``y`` ``(T, n)`` -> ``(T,)``."""
    n = k.shape[-1]
    chol = torch.linalg.cholesky(k + noise * torch.eye(n, dtype=k.dtype, device=k.device))
    r = (y - mean)[..., None]
    z = torch.linalg.solve_triangular(chol, r, upper=False)[..., 0]
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * (z.pow(2).sum(-1) + logdet + n * math.log(2 * math.pi))


def mlp_features(
    in_features: int, hidden: tuple[int, ...] = (40, 40), *, seed: int = 0
) -> nn.Module:
    """A ReLU network ``in_features -> hidden[-1]`` (the feature map), initialised from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        return nn.Sequential(*layers)


def mean_network(
    in_features: int, hidden: tuple[int, ...] = (40, 40), *, seed: int = 0
) -> nn.Module:
    """``mlp_features`` and a linear output ``(..., D) -> (..., 1)`` that starts at zero, so a
    GP with this mean function starts as one with the constant mean alone."""
    body = mlp_features(in_features, hidden, seed=seed)
    out = nn.Linear(hidden[-1] if hidden else in_features, 1, device="meta").to_empty(device="cpu")
    nn.init.zeros_(out.weight)  # built without drawing from the global generator
    nn.init.zeros_(out.bias)
    return nn.Sequential(body, out)


class PosteriorLearner(nn.Module):
    """A learner whose prediction is a Gaussian posterior mean (no adaptation steps): subclasses
    give ``predict(batch) -> (mean, var)``, ``(T, Q)`` float64 each."""

    def predict(self, batch: TaskBatch) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def predict_queries(self, batch: TaskBatch, *, steps: int = 0) -> torch.Tensor:
        """``(T, Q, 1)`` posterior mean at the query points, float64 (``steps`` does not apply)."""
        return self.predict(batch)[0][..., None]

    @torch.no_grad()
    def evaluate(self, batch: TaskBatch, *, steps: int | None = None) -> torch.Tensor:
        """Query MSE of the posterior mean per task, ``(steps + 1, T)`` identical rows."""
        mean, _ = self.predict(batch)
        mse = (mean - batch.query_y.flatten(1).double()).pow(2).mean(1)
        return mse.expand((steps or 0) + 1, -1).clone()


class DeepKernelGP(PosteriorLearner):
    """A GP per task with a meta-learned deep kernel; ``meta_step`` and ``evaluate`` like a learner.

    Args:
        feature_map: ``(..., D) -> (..., F)`` network phi.
        kernel: ``"rbf"``, ``"linear"`` or ``"rbf+linear"`` on the features.
        noise: initial sigma^2 (standardised targets: 0.1).
        mean_map: ``(..., D) -> (..., 1)`` network mu added to the constant prior mean (``None``:
            a constant mean only, deep kernel transfer as published).
    """

    def __init__(
        self, *, feature_map: nn.Module, kernel: Kernel = "rbf+linear", noise: float = 0.1,
        mean_map: nn.Module | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        if kernel not in ("rbf", "linear", "rbf+linear"):
            raise ValueError(f"kernel must be 'rbf', 'linear' or 'rbf+linear', got {kernel!r}")
        self.feature_map = feature_map
        self.mean_map = mean_map
        self.kernel = kernel
        self.mean = nn.Parameter(torch.zeros(()))
        self.log_lengthscale = nn.Parameter(torch.zeros(()))
        self.log_outputscale = nn.Parameter(torch.zeros(2 if kernel == "rbf+linear" else ()))
        raw = math.log(math.expm1(noise - NOISE_FLOOR))  # softplus^-1
        self.raw_noise = nn.Parameter(torch.tensor(raw))

    @property
    def noise(self) -> torch.Tensor:
        return F.softplus(self.raw_noise) + NOISE_FLOOR

    def _kernel(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self.feature_map(a).double(), self.feature_map(b).double()
        return kernel_matrix(fa, fb, kind=self.kernel,
                             lengthscale=self.log_lengthscale.exp().double(),
                             outputscale=self.log_outputscale.exp().double())  # fmt: skip

    def _prior_mean(self, x: torch.Tensor) -> torch.Tensor:
        """``(T, n, D)`` inputs -> ``(T, n)`` prior mean, float64."""
        m = self.mean.double().expand(x.shape[:2])
        return m if self.mean_map is None else m + self.mean_map(x)[..., 0].double()

    def meta_step(self, batch: TaskBatch, *, step: int = 0) -> MetaStep:
        """Negative log marginal likelihood per row of each task's support + query rows."""
        x = torch.cat([batch.support_x, batch.query_x], 1)
        y = torch.cat([batch.support_y, batch.query_y], 1).flatten(1).double()
        nll = -gp_log_marginal(self._kernel(x, x), y, noise=self.noise.double(),
                               mean=self._prior_mean(x)) / y.shape[1]  # fmt: skip
        return MetaStep(objective=nll.mean(), query_loss=nll)

    @torch.no_grad()
    def predict(self, batch: TaskBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and latent variance at the query points: ``(T, Q)`` each, float64."""
        xs, xq = batch.support_x, batch.query_x
        k_qq = self._kernel(xq, xq).diagonal(dim1=-2, dim2=-1)
        m_s, m_q = self._prior_mean(xs), self._prior_mean(xq)
        mean, var = gp_posterior(self._kernel(xs, xs), self._kernel(xq, xs), k_qq,
                                 batch.support_y.flatten(1).double() - m_s,
                                 noise=self.noise.double(), mean=0.0)  # fmt: skip
        return m_q + mean, var
