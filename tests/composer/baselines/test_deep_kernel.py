"""Deep kernel transfer: the GP posterior against a float64 reference written out by hand."""

import math

import numpy as np
import pytest
import torch

from metacompose.baselines.deep_kernel import (
    DeepKernelGP,
    gp_log_marginal,
    gp_posterior,
    kernel_matrix,
    mlp_features,
)
from metacompose.baselines.meta_train import meta_train
from metacompose.tasks import SinusoidFamily


def rbf(a, b, ell, s2):
    return np.array([[s2 * math.exp(-0.5 * np.sum((u - v) ** 2) / ell**2) for v in b] for u in a])


def test_posterior_matches_hand_written_reference():
    rng = np.random.default_rng(0)
    xs, xq, ys = rng.normal(size=(6, 2)), rng.normal(size=(4, 2)), rng.normal(size=6)
    ell, s2, noise, m = 0.7, 1.3, 0.05, 0.2
    k_ss, k_qs, k_qq = rbf(xs, xs, ell, s2), rbf(xq, xs, ell, s2), rbf(xq, xq, ell, s2)
    inv = np.linalg.inv(k_ss + noise * np.eye(6))
    ref_mean = m + k_qs @ inv @ (ys - m)
    ref_var = np.diag(k_qq - k_qs @ inv @ k_qs.T)

    t = lambda a: torch.tensor(a, dtype=torch.float64)[None]  # noqa: E731
    kern = kernel_matrix(t(xs), t(xs), kind="rbf", lengthscale=torch.tensor(ell, dtype=torch.float64),
                         outputscale=torch.tensor(s2, dtype=torch.float64))  # fmt: skip
    np.testing.assert_allclose(kern[0].numpy(), k_ss, rtol=1e-12)
    mean, var = gp_posterior(t(k_ss), t(k_qs), t(np.diag(k_qq)), t(ys), noise=noise, mean=m)
    np.testing.assert_allclose(mean[0].numpy(), ref_mean, rtol=1e-10)
    np.testing.assert_allclose(var[0].numpy(), ref_var, rtol=1e-8, atol=1e-12)

    cov = k_ss + noise * np.eye(6)
    r = ys - m
    ref_ll = -0.5 * (
        r @ np.linalg.solve(cov, r) + np.linalg.slogdet(cov)[1] + 6 * math.log(2 * math.pi)
    )
    assert float(gp_log_marginal(t(k_ss), t(ys), noise=noise, mean=m)[0]) == pytest.approx(
        ref_ll, rel=1e-12
    )


def test_linear_kernel_sum():
    a = torch.randn(1, 3, 2, dtype=torch.float64)
    scales = torch.tensor([0.5, 2.0], dtype=torch.float64)
    k = kernel_matrix(
        a, a, kind="rbf+linear", lengthscale=torch.tensor(1.0).double(), outputscale=scales
    )
    sq = torch.cdist(a, a) ** 2
    torch.testing.assert_close(k, 0.5 * torch.exp(-0.5 * sq) + 2.0 * a @ a.transpose(1, 2))


def test_evaluate_uses_the_posterior_mean_and_training_raises_the_likelihood():
    fam = SinusoidFamily()
    gp = DeepKernelGP(feature_map=mlp_features(1, (16,), seed=0))
    g = torch.Generator().manual_seed(0)
    batch = fam.sample(8, shots=5, query=5, generator=g, split="test")
    mean, _ = gp.predict(batch)
    curve = gp.evaluate(batch, steps=1)
    torch.testing.assert_close(curve[0], (mean - batch.query_y[..., 0].double()).pow(2).mean(1))
    assert curve.shape == (2, 8)
    before = float(gp.meta_step(batch).objective.detach())
    r = meta_train(gp, fam, iterations=60, meta_batch_size=8, shots=5, query=5, lr=1e-2)
    assert r.iterations == 60 and float(gp.meta_step(batch).objective.detach()) < before


def test_unknown_kernel_is_refused():
    with pytest.raises(ValueError, match="kernel"):
        DeepKernelGP(feature_map=torch.nn.Identity(), kernel="matern")
