"""CROWN through the difference network: sound against exact references, tighter than forward."""

import statistics

import pytest
import torch
from reference import exact_max_1d, sinusoid_pairs

from metacompose.symbolic.diff_propagation import propagate_pair
from metacompose.symbolic.objectives import Objective
from metacompose.symbolic.self_test import random_pair


@pytest.fixture(scope="module")
def pairs():
    return sinusoid_pairs(6, seed=3)


def _boxes(k: int = 16):
    t = torch.linspace(-5, 5, k + 1, dtype=torch.float64)
    return t[:-1, None], t[1:, None]


def test_crown_tightens_the_fast_bound_towards_the_exact_max(pairs):
    xlo, xhi = _boxes()
    dev = Objective("deviation", 0)
    fwd, both = [], []
    for p in pairs:
        true = float(exact_max_1d(p, "deviation", -5.0, 5.0))
        b0 = float(dev.upper(propagate_pair(p, xlo, xhi, crown=False)[p.meta.output]).max())
        b1 = float(dev.upper(propagate_pair(p, xlo, xhi)[p.meta.output]).max())
        assert true <= b1 <= b0
        fwd.append(b0 / true)
        both.append(b1 / true)
    assert statistics.median(both) <= 1.06
    assert statistics.median(both) < statistics.median(fwd)


@pytest.mark.parametrize("act", ["relu", "tanh", "sin", "gelu", "silu", "sigmoid", "softplus"])
def test_output_and_difference_bounds_hold_at_every_grid_point(act):
    g = torch.Generator().manual_seed(7)
    pair = random_pair(g, input_dim=2, width=8, residual=True, scale=0.3, activation=act)
    t = torch.linspace(-2, 2, 5, dtype=torch.float64)
    lo = torch.stack(torch.meshgrid(t[:-1], t[:-1], indexing="ij"), -1).reshape(-1, 2)
    hi = lo + 1.0
    ob = propagate_pair(pair, lo, hi)[pair.meta.output]
    u = torch.rand(400, 2, generator=g, dtype=torch.float64)
    for i in range(lo.shape[0]):
        x = lo[i] + u * (hi[i] - lo[i])
        with torch.no_grad():
            d, y = pair.deviation(x)[:, 0], pair.adapted(x)[:, 0]
        assert bool((d <= ob.diff.hi[i, 0]).all() and (d >= ob.diff.lo[i, 0]).all())
        assert bool((y <= ob.adapted.hi[i, 0]).all() and (y >= ob.adapted.lo[i, 0]).all())
