"""The closed-form pair fits of the sum structure against one float64 least-squares solve per
pair and task."""

from __future__ import annotations

import itertools

import pytest
import torch

from metacompose.algorithms.pair_fit import fit_pair_weighted, matched_fit_mse, pair_fit_mse


def _lstsq_mse(f, g, y, weight, ridge):
    """One float64 solve per (pair, task) on the weighted points: the ridge on a and b only, as
    extra rows sqrt(lambda) e_a, sqrt(lambda) e_b with target 0."""
    keep = weight.bool()
    a, b, t = f.shape[0], g.shape[0], y.shape[0]
    out = torch.empty(a, b, t, dtype=torch.float64)
    for i, j, k in itertools.product(range(a), range(b), range(t)):
        cols = torch.stack([f[i, k, keep], g[j, k, keep], torch.ones(int(keep.sum()))], 1)
        pen = torch.tensor([[ridge**0.5, 0.0, 0.0], [0.0, ridge**0.5, 0.0]], dtype=torch.float64)
        design = torch.cat([cols.double(), pen])
        target = torch.cat([y[k, keep], torch.zeros(2, dtype=torch.float64)])
        w = torch.linalg.lstsq(design, target[:, None]).solution[:, 0]
        out[i, j, k] = ((cols.double() @ w - y[k, keep]) ** 2).mean()
    return out


@pytest.mark.parametrize("ridge", [1e-4, 0.5])
def test_pair_fit_mse_equals_one_least_squares_solve_per_pair(ridge):
    gen = torch.Generator().manual_seed(3)
    f, h = (torch.randn(n, 4, 9, generator=gen, dtype=torch.float64) for n in (3, 2))
    y = torch.randn(4, 9, generator=gen, dtype=torch.float64)
    weight = torch.tensor([1, 1, 0, 1, 1, 1, 0, 1, 1], dtype=torch.float64)
    got = pair_fit_mse(f, h, y, weight=weight, ridge=ridge)
    torch.testing.assert_close(got, _lstsq_mse(f, h, y, weight, ridge), rtol=1e-9, atol=1e-12)
    whole = pair_fit_mse(f, h, y, ridge=ridge)
    torch.testing.assert_close(whole, _lstsq_mse(f, h, y, torch.ones(9), ridge), rtol=1e-9, atol=0)
    # the amplitudes of one pair per task give the same residual on the weighted points
    coef = fit_pair_weighted(f[1], h[0], y, weight=weight, ridge=ridge)
    pred = coef[:, 0:1] * f[1] + coef[:, 1:2] * h[0] + coef[:, 2:3]
    keep = weight.bool()
    rss = ((pred - y)[:, keep] ** 2).mean(1)
    pen = ridge * (coef[:, 0] ** 2 + coef[:, 1] ** 2) / int(keep.sum())
    # the ridge objective is minimal at coef: no other amplitudes fit better
    other = coef + torch.tensor([0.01, -0.02, 0.03], dtype=torch.float64)
    pred2 = other[:, 0:1] * f[1] + other[:, 1:2] * h[0] + other[:, 2:3]
    rss2 = ((pred2 - y)[:, keep] ** 2).mean(1) + ridge * (other[:, :2] ** 2).sum(1) / 7
    assert (rss + pen < rss2).all()
    torch.testing.assert_close(rss, got[1, 0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("ridge", [1e-4, 0.5])
def test_matched_fit_mse_equals_one_least_squares_solve_per_matched_pair(ridge):
    gen = torch.Generator().manual_seed(5)
    f, h = (torch.randn(3, 4, 9, generator=gen, dtype=torch.float64) for _ in range(2))
    y = torch.randn(4, 9, generator=gen, dtype=torch.float64)
    got, amp = matched_fit_mse(f, h, y, ridge=ridge)  # pair i is (f_i, h_i)
    every = _lstsq_mse(f, h, y, torch.ones(9), ridge)  # (3, 3, 4): all pairs
    torch.testing.assert_close(got, every.diagonal().T, rtol=1e-9, atol=1e-12)
    # the larger amplitude: that of the one-pair solve
    for i in range(3):
        coef = fit_pair_weighted(
            f[i], h[i], y, weight=torch.ones(9, dtype=torch.float64), ridge=ridge
        )
        torch.testing.assert_close(amp[i], coef[:, :2].abs().amax(1), rtol=1e-9, atol=1e-12)
