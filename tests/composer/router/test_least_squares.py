"""The closed-form E-step of the sum structure against brute force: float64 least squares per
pair and an exhaustive loop over context pairs."""

from __future__ import annotations

import itertools

import pytest
import torch

from metacompose.router.least_squares import (
    best_contexts,
    fit_one_pair,
    pair_least_squares,
    predict,
)


def _features(seed: int, a: int, b: int, t: int, n: int):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(a, t, n, generator=g, dtype=torch.float64)
    h = torch.randn(b, t, n, generator=g, dtype=torch.float64)
    y = torch.randn(t, n, generator=g, dtype=torch.float64)
    return f, h, y


def _brute(f, h, y, ridge):
    """One float64 solve per (pair, task): ridge as extra rows sqrt(lambda) I, target 0."""
    a, b, t = f.shape[0], h.shape[0], y.shape[0]
    w = torch.empty(a, b, t, 3, dtype=torch.float64)
    loss = torch.empty(a, b, t, dtype=torch.float64)
    for i, j, k in itertools.product(range(a), range(b), range(t)):
        design = torch.stack([f[i, k], h[j, k], torch.ones_like(y[k])], dim=1)
        aug = torch.cat([design, ridge**0.5 * torch.eye(3, dtype=torch.float64)])
        target = torch.cat([y[k], torch.zeros(3, dtype=torch.float64)])
        sol = torch.linalg.lstsq(aug, target[:, None]).solution[:, 0]
        w[i, j, k] = sol
        loss[i, j, k] = ((design @ sol - y[k]) ** 2).mean()
    return w, loss


@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_pair_least_squares_matches_a_solve_per_pair(ridge):
    f, h, y = _features(0, 3, 4, 5, 10)
    fits = pair_least_squares(f, h, y, ridge=ridge)
    w, loss = _brute(f, h, y, ridge)
    torch.testing.assert_close(fits.weights, w, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(fits.loss, loss, atol=1e-10, rtol=1e-9)


def test_the_true_pair_fits_exactly():
    f, h, _ = _features(1, 3, 3, 4, 10)
    y = 1.5 * f[2] - 0.5 * h[0] + 0.25
    fits = pair_least_squares(f, h, y)
    assert fits.loss[2, 0].max() < 1e-12
    torch.testing.assert_close(
        fits.weights[2, 0], torch.tensor([[1.5, -0.5, 0.25]] * 4, dtype=torch.float64)
    )
    assert fits.loss.flatten(0, 1).argmin(dim=0).tolist() == [2 * 3 + 0] * 4


def test_fit_one_pair_and_predict_agree_with_the_all_pairs_solve():
    f, h, y = _features(2, 2, 3, 4, 10)
    fits = pair_least_squares(f, h, y, ridge=0.1)
    w = fit_one_pair(f[1], h[2], y, ridge=0.1)
    torch.testing.assert_close(w, fits.weights[1, 2], atol=1e-10, rtol=1e-9)
    mse = ((predict(w, f[1], h[2]) - y) ** 2).mean(-1)
    torch.testing.assert_close(mse, fits.loss[1, 2], atol=1e-10, rtol=1e-9)


def test_best_contexts_is_the_exhaustive_minimum():
    c, d, gsz, t = 2, 3, 4, 5
    loss = torch.rand(c * gsz, d * gsz, t, generator=torch.Generator().manual_seed(3))
    kf, kg, best = best_contexts(loss, gsz)
    for i, j, task in itertools.product(range(c), range(d), range(t)):
        cells = {
            (kk, ll): float(loss[i * gsz + kk, j * gsz + ll, task])
            for kk, ll in itertools.product(range(gsz), range(gsz))
        }
        want = min(cells, key=cells.get)
        assert (int(kf[i, j, task]), int(kg[i, j, task])) == want
        assert float(best[i, j, task]) == cells[want]
