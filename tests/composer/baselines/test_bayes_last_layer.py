"""ALPaCA (a Bayesian last layer on ``[1, x, g(x)]``): its function-space algebra against the
weight-space posterior written out by hand in float64, the mixed model it contains, and what
meta-training learns."""

import math

import numpy as np
import pytest
import torch

from metacompose.baselines.bayes_last_layer import BayesLastLayer
from metacompose.baselines.mixed_effects import MixedModelFit, predict
from metacompose.tasks.base import TaskBatch


def _set(model: BayesLastLayer, *, mu0, chol, noise: float) -> None:
    with torch.no_grad():
        model.prior_mean.copy_(torch.as_tensor(mu0))
        chol = torch.as_tensor(chol, dtype=torch.float64)
        model.chol_lower.copy_(torch.tril(chol, -1))
        model.log_chol_diag.copy_(chol.diagonal().log())
        model.raw_noise.fill_(math.log(math.expm1(noise - 1e-4)))


def _batch(xs, ys, xq, yq) -> TaskBatch:
    t = lambda a: torch.tensor(a, dtype=torch.float64)[None]  # noqa: E731
    return TaskBatch(t(xs), t(ys)[..., None], t(xq), t(yq)[..., None])


def test_posterior_and_objective_match_the_weight_space_reference():
    rng = np.random.default_rng(0)
    model = BayesLastLayer(in_features=2, hidden=(3,), seed=0).double()
    w = 1 + 2 + 3
    chol = np.tril(rng.normal(size=(w, w)) * 0.4, -1) + np.diag(rng.uniform(0.3, 1.2, size=w))
    mu0, noise = rng.normal(size=w), 0.05
    _set(model, mu0=mu0, chol=chol, noise=noise)
    xs, xq = rng.normal(size=(4, 2)), rng.normal(size=(5, 2))
    ys, yq = rng.normal(size=4), rng.normal(size=5)
    batch = _batch(xs, ys, xq, yq)
    phi = lambda x: model.features(torch.tensor(x)[None])[0].detach().numpy()  # noqa: E731
    ps, pq = phi(xs), phi(xq)
    np.testing.assert_allclose(ps[:, :3], np.c_[np.ones(4), xs])  # [1, x, g(x)]

    s0_inv = np.linalg.inv(chol @ chol.T)
    cov_n = np.linalg.inv(s0_inv + ps.T @ ps / noise)
    mu_n = cov_n @ (s0_inv @ mu0 + ps.T @ ys / noise)
    mean, var = model.predict(batch)
    np.testing.assert_allclose(mean[0].numpy(), pq @ mu_n, rtol=0, atol=1e-9)
    np.testing.assert_allclose(var[0].numpy(), np.diag(pq @ cov_n @ pq.T), rtol=1e-7, atol=1e-10)

    pred_cov = pq @ cov_n @ pq.T + noise * np.eye(5)  # p(y_q | y_s), weight space
    r = yq - pq @ mu_n
    nll = 0.5 * (r @ np.linalg.solve(pred_cov, r) + np.linalg.slogdet(pred_cov)[1]
                 + 5 * math.log(2 * math.pi)) / 5  # fmt: skip
    assert float(model.meta_step(batch).objective.detach()) == pytest.approx(nll, rel=1e-8)
    curve = model.evaluate(batch, steps=2)
    assert curve.shape == (3, 1)
    assert float(curve[2, 0]) == pytest.approx(float(np.mean((pq @ mu_n - yq) ** 2)), rel=1e-9)


def test_with_the_network_switched_off_it_is_the_mixed_models_blup():
    """Prior mean = fixed effects, prior covariance = random effects' covariance (on [1, x]),
    noise = residual variance, g's weights' prior ~0: the mixed model's prediction, exactly."""
    rng = np.random.default_rng(1)
    cov = np.array([[0.8, 0.3], [0.3, 0.5]])
    fit = MixedModelFit(beta=torch.tensor([0.4, -1.2], dtype=torch.float64),
                        cov=torch.tensor(cov), noise=0.09, log_likelihood=0.0, reml=True)  # fmt: skip
    model = BayesLastLayer(in_features=1, hidden=(4,), seed=3).double()
    chol = np.zeros((6, 6))
    chol[:2, :2] = np.linalg.cholesky(cov)
    chol[2:, 2:] = np.eye(4) * 1e-12
    _set(model, mu0=np.r_[0.4, -1.2, np.zeros(4)], chol=chol, noise=0.09)
    g = torch.Generator().manual_seed(0)
    xs, xq = torch.randn(7, 5, 1, generator=g).double(), torch.randn(7, 9, 1, generator=g).double()
    ys = torch.tensor(rng.normal(size=(7, 5, 1)))
    batch = TaskBatch(xs, ys, xq, torch.zeros(7, 9, 1, dtype=torch.float64))
    want = predict(fit, xs, ys, xq)[..., 0]
    torch.testing.assert_close(model.predict(batch)[0], want, rtol=0, atol=1e-10)


def _lines(n: int, *, shots: int, query: int, seed: int) -> TaskBatch:
    """Random lines ``y = a + b x + eps``: ``a ~ N(0.5, 1)``, ``b ~ N(-1, 0.25)``, sd 0.2."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, shots + query, 1, generator=g)
    a = 0.5 + torch.randn(n, 1, 1, generator=g)
    b = -1 + 0.5 * torch.randn(n, 1, 1, generator=g)
    y = a + b * x + 0.2 * torch.randn(x.shape, generator=g)
    return TaskBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:])


def test_meta_training_on_random_lines_reaches_the_bayes_optimal_prediction():
    """Trained on tasks drawn from a known prior, the learned prior predicts within 2% of the
    posterior under the true prior (the best any learner can do; the start is 1.5x worse)."""
    test = _lines(2000, shots=3, query=10, seed=0)
    oracle = BayesLastLayer(in_features=1, hidden=(8,), seed=0)
    chol = np.zeros((10, 10))
    chol[:2, :2] = np.diag([1.0, 0.5])
    chol[2:, 2:] = np.eye(8) * 1e-12
    _set(oracle, mu0=np.r_[0.5, -1.0, np.zeros(8)], chol=chol, noise=0.04)
    best = float(oracle.evaluate(test)[0].mean())

    model = BayesLastLayer(in_features=1, hidden=(8,), seed=0)
    start = float(model.evaluate(test)[0].mean())
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for i in range(400):
        opt.zero_grad()
        model.meta_step(_lines(64, shots=3, query=10, seed=1 + i)).objective.backward()
        opt.step()
    learned = float(model.evaluate(test)[0].mean())
    assert start > 1.5 * best and best < learned < 1.02 * best
    assert float(model.noise.detach()) == pytest.approx(0.04, rel=0.25)


def test_bad_arguments_are_refused():
    for kw in ({"in_features": 0}, {"in_features": 1, "noise": 0.0},
               {"in_features": 1, "prior_scale": -1.0}):  # fmt: skip
        with pytest.raises(ValueError, match="in_features must be"):
            BayesLastLayer(**kw)
