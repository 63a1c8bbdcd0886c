"""Deep kernel transfer (and its deep mean function): the GP posterior and likelihood against
float64 references written out by hand."""

import math

import numpy as np
import pytest
import torch

from metacompose.baselines.deep_kernel import (
    NOISE_FLOOR,
    DeepKernelGP,
    gp_log_marginal,
    gp_posterior,
    kernel_matrix,
    mean_network,
    mlp_features,
)
from metacompose.baselines.meta_train import meta_train
from metacompose.tasks import SinusoidFamily
from metacompose.tasks.base import TaskBatch


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


def _trend_batch(n_tasks: int, *, shots: int, query: int, seed: int) -> TaskBatch:
    """Tasks ``y = sin(3x) + c`` with a per-task offset ``c``: the trend is shared by all tasks."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_tasks, shots + query, 1, generator=g) * 4 - 2
    c = torch.randn(n_tasks, 1, 1, generator=g) * 0.3
    y = torch.sin(3 * x) + c
    return TaskBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:])


def test_deep_mean_posterior_and_likelihood_match_hand_written_reference():
    rng = np.random.default_rng(1)
    xs, xq, ys = rng.normal(size=(5, 2)), rng.normal(size=(3, 2)), rng.normal(size=5)
    w, b, m0, ell, s2, noise = np.array([0.4, -1.1]), 0.3, -0.2, 0.8, 1.5, 0.07
    mu = torch.nn.Linear(2, 1)
    gp = DeepKernelGP(feature_map=torch.nn.Identity(), kernel="rbf", noise=noise, mean_map=mu)
    gp.double()
    with torch.no_grad():
        mu.weight.copy_(torch.tensor(w)[None]), mu.bias.fill_(b), gp.mean.fill_(m0)
        gp.log_lengthscale.fill_(math.log(ell)), gp.log_outputscale.fill_(math.log(s2))
        gp.raw_noise.fill_(math.log(math.expm1(noise - NOISE_FLOOR)))  # exact in float64
    m = lambda x: m0 + x @ w + b  # noqa: E731
    inv = np.linalg.inv(rbf(xs, xs, ell, s2) + noise * np.eye(5))
    ref = m(xq) + rbf(xq, xs, ell, s2) @ inv @ (ys - m(xs))

    t = lambda a: torch.tensor(a, dtype=torch.float64)[None]  # noqa: E731
    batch = TaskBatch(t(xs), t(ys)[..., None], t(xq), torch.zeros(1, 3, 1, dtype=torch.float64))
    mean, _ = gp.predict(batch)
    np.testing.assert_allclose(mean[0].numpy(), ref, rtol=0, atol=1e-10)

    x_all, y_all = np.concatenate([xs, xq]), np.concatenate([ys, np.zeros(3)])
    cov = rbf(x_all, x_all, ell, s2) + noise * np.eye(8)
    r = y_all - m(x_all)
    ref_nll = (
        r @ np.linalg.solve(cov, r) + np.linalg.slogdet(cov)[1] + 8 * math.log(2 * math.pi)
    ) / 16
    assert float(gp.meta_step(batch).objective.detach()) == pytest.approx(ref_nll, rel=1e-9)


def test_mean_network_starts_as_the_constant_mean_and_learns_the_shared_trend():
    batch = _trend_batch(64, shots=2, query=10, seed=0)
    plain = DeepKernelGP(feature_map=mlp_features(1, (32,), seed=0))
    deep = DeepKernelGP(feature_map=mlp_features(1, (32,), seed=0),
                        mean_map=mean_network(1, (32,), seed=1))  # fmt: skip
    torch.testing.assert_close(deep.predict(batch)[0], plain.predict(batch)[0])

    for gp in (plain, deep):
        opt = torch.optim.Adam(gp.parameters(), lr=1e-2)
        for i in range(300):
            opt.zero_grad()
            gp.meta_step(_trend_batch(16, shots=2, query=10, seed=100 + i)).objective.backward()
            opt.step()
    mse_plain, mse_deep = (float(gp.evaluate(batch)[0].mean()) for gp in (plain, deep))
    # two support points cannot show sin(3x); the learned prior mean carries it to every task
    assert mse_deep < 0.5 * mse_plain


def test_mean_network_leaves_the_global_generator_alone():
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    net = mean_network(2, (8,), seed=5)
    assert torch.equal(torch.rand(3), want) and not net[-1].weight.detach().any()
