"""The mixed model against a brute-force optimisation of the dense likelihood (scipy)."""

import numpy as np
import pytest
import torch

from metacompose.baselines.mixed_effects import (
    MixedEffectsLearner,
    MixedModelFit,
    blup,
    fit_mixed_model,
    group_grams,
    predict,
)
from metacompose.tasks.base import TaskBatch

optimize = pytest.importorskip("scipy.optimize")
linalg = pytest.importorskip("scipy.linalg")


@pytest.fixture(scope="module")
def data():
    """12 groups of 4-9 rows: y = 1 + 0.5 x + b0 + b1 x + noise, (b0, b1) correlated."""
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for _ in range(12):
        n = int(rng.integers(4, 10))
        x = rng.normal(size=n)
        b = rng.multivariate_normal([0, 0], [[0.8, 0.3], [0.3, 0.5]])
        xs.append(x)
        ys.append(1.0 + 0.5 * x + b[0] + b[1] * x + 0.3 * rng.normal(size=n))
    longest = max(len(y) for y in ys)
    x_pad, y_pad = torch.zeros(12, longest, 1), torch.zeros(12, longest)
    mask = torch.zeros(12, longest, dtype=torch.bool)
    for g, (x, y) in enumerate(zip(xs, ys)):
        x_pad[g, : len(x), 0], y_pad[g, : len(y)], mask[g, : len(y)] = (
            torch.tensor(x), torch.tensor(y), True,
        )  # fmt: skip
    return xs, ys, group_grams(x_pad, y_pad, mask), int(mask.sum())


def _unpack(theta):
    chol = np.array([[np.exp(theta[0]), 0.0], [theta[1], np.exp(theta[2])]])
    return chol @ chol.T, np.exp(theta[3])


def _dense_cov(designs, cov, noise):
    return [x @ cov @ x.T + noise * np.eye(len(x)) for x in designs]


def _brute(fun, starts):
    opts = {"maxiter": 40000, "maxfev": 40000, "xatol": 1e-10, "fatol": 1e-13}
    return min((optimize.minimize(fun, s, method="Nelder-Mead", options=opts) for s in starts),
               key=lambda r: r.fun)  # fmt: skip


def test_ml_fit_matches_brute_force(data):
    xs, ys, grams, n = data
    designs = [np.c_[np.ones(len(x)), x] for x in xs]

    def nll(par):
        cov, noise = _unpack(par[2:])
        total = 0.0
        for x, y, v in zip(designs, ys, _dense_cov(designs, cov, noise)):
            r = y - x @ par[:2]
            total += 0.5 * (np.linalg.slogdet(v)[1] + r @ np.linalg.solve(v, r)
                            + len(y) * np.log(2 * np.pi))  # fmt: skip
        return total

    ref = _brute(nll, [np.zeros(6), np.r_[1.0, 0.5, 0.0, 0.0, 0.0, -1.0]])
    fit = fit_mixed_model(grams, n, reml=False)
    cov, noise = _unpack(ref.x[2:])
    assert fit.log_likelihood == pytest.approx(-ref.fun, abs=1e-6)
    np.testing.assert_allclose(fit.beta.numpy(), ref.x[:2], atol=1e-4)
    np.testing.assert_allclose(fit.cov.numpy(), cov, atol=1e-4)
    assert fit.noise == pytest.approx(noise, abs=1e-5)


def test_reml_fit_matches_brute_force_error_contrasts(data):
    xs, ys, grams, n = data
    designs = [np.c_[np.ones(len(x)), x] for x in xs]
    contrasts = linalg.null_space(np.vstack(designs).T)  # K: K'X = 0, K'K = I
    y_all = np.concatenate(ys)

    def nll(theta):
        cov, noise = _unpack(theta)
        w = contrasts.T @ linalg.block_diag(*_dense_cov(designs, cov, noise)) @ contrasts
        z = contrasts.T @ y_all
        return 0.5 * (np.linalg.slogdet(w)[1] + z @ np.linalg.solve(w, z)
                      + len(z) * np.log(2 * np.pi))  # fmt: skip

    ref = _brute(nll, [np.zeros(4), np.r_[0.0, 0.0, 0.0, -1.0]])
    fit = fit_mixed_model(grams, n, reml=True)
    cov, noise = _unpack(ref.x)
    assert fit.log_likelihood == pytest.approx(-ref.fun, abs=1e-6)
    np.testing.assert_allclose(fit.cov.numpy(), cov, atol=1e-4)
    assert fit.noise == pytest.approx(noise, abs=1e-5)


def _fit(cov=((0.5, 0.1), (0.1, 0.3)), noise=0.2) -> MixedModelFit:
    return MixedModelFit(beta=torch.tensor([0.3, -0.7], dtype=torch.float64),
                         cov=torch.tensor(cov, dtype=torch.float64), noise=noise,
                         log_likelihood=0.0, reml=True)  # fmt: skip


def test_blup_is_the_gaussian_posterior_mean():
    fit = _fit()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, 5, 1, generator=g), torch.randn(3, 5, 1, generator=g)
    got = blup(fit, x, y)
    for t in range(3):
        z = np.c_[np.ones(5), x[t, :, 0].double().numpy()]
        s, r = fit.cov.numpy(), y[t, :, 0].double().numpy() - z @ fit.beta.numpy()
        post_cov = np.linalg.inv(z.T @ z / fit.noise + np.linalg.inv(s))  # conjugate update
        np.testing.assert_allclose(got[t].numpy(), post_cov @ z.T @ r / fit.noise, rtol=1e-9)


def test_learner_scores_query_mse_and_singular_cov_is_the_fixed_line():
    fit = _fit(cov=((0.0, 0.0), (0.0, 0.0)))
    x = torch.randn(2, 4, 1)
    batch = TaskBatch(support_x=x, support_y=torch.randn(2, 4, 1), query_x=x,
                      query_y=torch.zeros(2, 4, 1))  # fmt: skip
    pred = predict(fit, batch.support_x, batch.support_y, batch.query_x)
    torch.testing.assert_close(pred[..., 0], 0.3 - 0.7 * x[..., 0].double())
    curve = MixedEffectsLearner(fit=fit).evaluate(batch, steps=2)
    assert curve.shape == (3, 2)
    torch.testing.assert_close(curve[2], pred.pow(2).flatten(1).mean(1))


def test_predictions_are_the_posterior_mean_line_so_the_ensemble_can_take_it():
    """``predict_queries``: each task's query points on the line ``beta + b`` with ``b`` the
    conjugate posterior mean (numpy, float64), so the mixed model can be an ensemble member."""
    from metacompose.baselines.ensemble import PredictsQueries

    fit, g = _fit(), torch.Generator().manual_seed(2)
    sx, sy, qx = (torch.randn(3, n, 1, generator=g) for n in (6, 6, 4))
    batch = TaskBatch(support_x=sx, support_y=sy, query_x=qx, query_y=torch.zeros(3, 4, 1))
    learner = MixedEffectsLearner(fit=fit)
    assert isinstance(learner, PredictsQueries)
    got = learner.predict_queries(batch, steps=5)
    assert got.shape == (3, 4, 1) and got.dtype == torch.float64
    for t in range(3):
        z = np.c_[np.ones(6), sx[t, :, 0].double().numpy()]
        r = sy[t, :, 0].double().numpy() - z @ fit.beta.numpy()
        post = np.linalg.inv(z.T @ z / fit.noise + np.linalg.inv(fit.cov.numpy()))
        coef = fit.beta.numpy() + post @ z.T @ r / fit.noise
        line = np.c_[np.ones(4), qx[t, :, 0].double().numpy()] @ coef
        np.testing.assert_allclose(got[t, :, 0].numpy(), line, rtol=1e-9)
