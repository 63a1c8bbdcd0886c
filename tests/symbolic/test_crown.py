"""CROWN through the difference network: sound against exact references, tighter than forward."""

import statistics
from fractions import Fraction

import pytest
import torch
from reference import exact_max_1d, sinusoid_pairs

from metacompose.symbolic import BoxDomain, DeviationBound, StabilitySpec, certify
from metacompose.symbolic.crown import activation_depth, backward, concretize_upper, net_crown
from metacompose.symbolic.diff_propagation import propagate_pair
from metacompose.symbolic.network import Activation, ReLU
from metacompose.symbolic.objectives import Objective
from metacompose.symbolic.self_test import random_pair


@pytest.fixture(scope="module")
def pairs():
    return sinusoid_pairs(6, seed=3)


@pytest.fixture(scope="module")
def exact(pairs):
    """Breakpoint-enumerated maxima of |f_adapted - f_meta| on [-5, 5], one per pair."""
    return [exact_max_1d(p, "deviation", -5.0, 5.0) for p in pairs]


def _boxes(k: int = 16):
    t = torch.linspace(-5, 5, k + 1, dtype=torch.float64)
    return t[:-1, None], t[1:, None]


def test_crown_tightens_the_fast_bound_towards_the_exact_max(pairs, exact):
    xlo, xhi = _boxes()
    dev = Objective("deviation", 0)
    fwd, both = [], []
    for p, true in zip(pairs, exact):
        true = float(true)
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


def test_the_fast_tier_bound_is_never_below_the_exact_max(pairs, exact):
    """The certified fast-tier bound (default boxes) against breakpoint enumeration, on trained
    stand-ins and random ReLU pairs (plain and residual), 1-D inputs."""
    g = torch.Generator().manual_seed(11)
    small = [
        random_pair(g, input_dim=1, width=12, residual=res, scale=s, activation="relu")
        for res in (False, True)
        for s in (0.05, 0.5)
    ]
    refs = exact + [exact_max_1d(p, "deviation", -5.0, 5.0) for p in small]
    dom = BoxDomain(lower=(-5.0,), upper=(5.0,))
    spec = StabilitySpec(domain=dom, deviation=DeviationBound(max_abs=(1e9,)))
    for p, true in zip(pairs + small, refs):
        (r,) = certify(p, spec, tier="fast").results
        assert r.status == "proved"
        assert Fraction(r.outcome.certificate.bound) >= true
        assert r.outcome.certificate.bound <= 1.25 * float(true) + 1e-9


def test_depth_one_nodes_get_the_back_substitution_bound_without_running_it():
    """net_crown skips back-substitution for nodes behind one activation: the forward bounds it
    keeps equal what the backward pass would give (to rounding)."""
    g = torch.Generator().manual_seed(5)
    for act in ("relu", "tanh"):
        pair = random_pair(g, input_dim=2, width=10, residual=False, scale=0.2, activation=act)
        xlo = torch.tensor([[-1.0, -0.5], [0.0, 0.2]], dtype=torch.float64)
        xhi = xlo + 0.7
        fwd = propagate_pair(pair, xlo, xhi, crown=False)
        net = pair.meta
        bounds = {k: (v.meta.lo, v.meta.hi) for k, v in fwd.items()}
        depth = activation_depth(net)
        relax, mags = net_crown(net, dict(bounds), xlo, xhi)
        for name in net.order:
            if not 0 < depth[name] <= 1 or isinstance(net.nodes[name].op, ReLU | Activation):
                continue
            w = net.widths[name]
            eye = torch.eye(w, dtype=torch.float64)
            rows = torch.cat([eye, -eye]).expand(xlo.shape[0], 2 * w, w)
            up = concretize_upper(*backward(net, name, rows, relax, mags), xlo, xhi)
            lo, hi = bounds[name]
            torch.testing.assert_close(hi, up[:, :w], atol=1e-9, rtol=1e-9)
            torch.testing.assert_close(lo, -up[:, w:], atol=1e-9, rtol=1e-9)
