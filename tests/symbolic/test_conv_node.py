"""Structured Conv2d / MaxPool2d nodes against their exact dense lowering and sampled points."""

from fractions import Fraction

import pytest
import torch

from metacompose.symbolic.conv import conv2d_affine, maxpool_nodes
from metacompose.symbolic.crown import backward, concretize_upper, net_crown
from metacompose.symbolic.diff_propagation import propagate_pair
from metacompose.symbolic.exact_eval import evaluate
from metacompose.symbolic.image_bounds import forward_linear_bounds, image_bounds, interval_bounds
from metacompose.symbolic.image_ops import Conv2d, MaxPool2d
from metacompose.symbolic.network import INPUT, Affine, Network, NetworkPair, Node, ReLU
from metacompose.symbolic.prediction import margin_rows, margin_upper
from metacompose.symbolic.self_test import self_test


def _image_nets(seed: int, *, pool: bool, scale: float = 1.0) -> tuple[Network, Network]:
    """A 1x8x8 net: conv 3x3 pad 1 (4) - ReLU [- max-pool 2] - conv 3x3 stride 2 pad 1 (4) -
    ReLU - Affine (3); returned with structured nodes and as its dense lowering."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, s=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * s * scale

    w1, b1 = rnd(4, 1, 3, 3, s=0.5), rnd(4, s=0.1)
    w2, b2 = rnd(4, 4, 3, 3, s=0.3), rnd(4, s=0.1)
    c1 = Conv2d(w1, b1, (1, 8, 8), 1, 1)
    conv = [Node("c1", c1, (INPUT,)), Node("r1", ReLU(), ("c1",))]
    dense = [Node("c1", conv2d_affine(w1, b1, (1, 8, 8), padding=1)[0], (INPUT,))]
    dense.append(Node("r1", ReLU(), ("c1",)))
    h, dh, shape = "r1", "r1", c1.out_shape
    if pool:
        p1 = MaxPool2d(shape, 2, 2)
        conv.append(Node("p1", p1, ("r1",)))
        new, dh, _ = maxpool_nodes("p1", "r1", shape, 2, 2)
        dense += new
        h, shape = "p1", p1.out_shape
    c2 = Conv2d(w2, b2, shape, 2, 1)
    n2 = c2.out_shape[0] * c2.out_shape[1] * c2.out_shape[2]
    head = Affine(rnd(3, n2, s=0.3), rnd(3, s=0.1))
    conv += [Node("c2", c2, (h,)), Node("r2", ReLU(), ("c2",)), Node("fc", head, ("r2",))]
    dense += [
        Node("c2", conv2d_affine(w2, b2, shape, stride=2, padding=1)[0], (dh,)),
        Node("r2", ReLU(), ("c2",)),
        Node("fc", head, ("r2",)),
    ]
    return Network(input_dim=64, nodes=conv), Network(input_dim=64, nodes=dense)


def _boxes(seed: int, b: int = 4, radius: float = 0.05):
    x = torch.rand(b, 64, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x - radius, x + radius


@pytest.mark.parametrize("pool", [False, True])
def test_forward_equals_the_dense_lowering(pool):
    conv, dense = _image_nets(0, pool=pool)
    x = torch.rand(6, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(conv(x), dense(x), atol=1e-12, rtol=1e-12)


def test_interval_bounds_equal_the_dense_lowering_up_to_rounding():
    conv, dense = _image_nets(2, pool=False)
    xlo, xhi = _boxes(3)
    ic, idn = interval_bounds(conv, xlo, xhi), interval_bounds(dense, xlo, xhi)
    for k in ("c1", "r1", "c2", "fc"):
        torch.testing.assert_close(ic[k][0], idn[k][0], atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(ic[k][1], idn[k][1], atol=1e-9, rtol=1e-9)


def test_back_substitution_through_conv_equals_the_dense_matrix():
    """With the same relaxations, the conv_transpose backward pass gives the dense ``lam @ W``
    pass's linear function of the input and constant, up to rounding; the slack is tiny."""
    conv, dense = _image_nets(4, pool=False)
    xlo, xhi = _boxes(5)
    bounds = dict(interval_bounds(conv, xlo, xhi))
    relax, mags = net_crown(conv, bounds, xlo, xhi)
    rows = margin_rows(torch.tensor([0, 1, 2, 0]), 3)
    lc, cc, sc = backward(conv, "fc", rows, relax, mags)
    ld, cd, sd = backward(dense, "fc", rows, relax, mags)
    torch.testing.assert_close(lc, ld, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(cc, cd, atol=1e-10, rtol=1e-10)
    assert float(sc.max()) < 1e-9 and float(sd.max()) < 1e-9
    torch.testing.assert_close(
        concretize_upper(lc, cc, sc, xlo, xhi), concretize_upper(ld, cd, sd, xlo, xhi)
    )


@pytest.mark.parametrize("pool", [False, True])
def test_pair_bounds_are_never_beaten_by_sampled_points(pool):
    meta, _ = _image_nets(6, pool=pool)
    adapted, _ = _image_nets(7, pool=pool)
    pair = NetworkPair(meta=meta, adapted=adapted)
    xlo, xhi = _boxes(8, radius=0.1)
    ob = propagate_pair(pair, xlo, xhi)[meta.output]
    g = torch.Generator().manual_seed(9)
    for i in range(xlo.shape[0]):
        u = torch.rand(3000, 64, generator=g, dtype=torch.float64)
        u[:8] = torch.randint(0, 2, (8, 64), generator=g).double()  # corners
        x = xlo[i] + u * (xhi[i] - xlo[i])
        with torch.no_grad():
            y, d = adapted(x), adapted(x) - meta(x)
        assert bool((y <= ob.adapted.hi[i]).all() and (y >= ob.adapted.lo[i]).all())
        assert bool((d <= ob.diff.hi[i]).all() and (d >= ob.diff.lo[i]).all())


def test_margin_bounds_hold_and_tighten_towards_the_dense_ones():
    """CROWN margins of the conv-node net (interval start, max-pool relaxation) hold at sampled
    points and are within a small factor of the dense lowering's (forward linear start)."""
    conv, dense = _image_nets(10, pool=True)
    xlo, xhi = _boxes(11, radius=0.02)
    cls = conv(0.5 * (xlo + xhi)).argmax(1)
    rows = margin_rows(cls, 3)
    uc = margin_upper(conv, interval_bounds(conv, xlo, xhi), rows, xlo, xhi)
    g = torch.Generator().manual_seed(12)
    for i in range(xlo.shape[0]):
        x = xlo[i] + torch.rand(2000, 64, generator=g, dtype=torch.float64) * (xhi[i] - xlo[i])
        with torch.no_grad():
            m = conv(x) @ rows[i].T
        assert bool((m <= uc[i]).all())
    fwd = propagate_pair(NetworkPair(meta=dense, adapted=dense), xlo, xhi, crown=False)
    ud = margin_upper(dense, {k: (p.meta.lo, p.meta.hi) for k, p in fwd.items()}, rows, xlo, xhi)
    assert float((uc - ud).max()) < 0.5 * float(ud.abs().max())


def test_exact_evaluation_encloses_the_dense_exact_value():
    conv, dense = _image_nets(13, pool=True)
    x = torch.rand(64, generator=torch.Generator().manual_seed(14), dtype=torch.float64)
    for (lo, hi), (v, v2) in zip(evaluate(conv, x), evaluate(dense, x)):
        assert v == v2  # the dense lowering is exact: a point
        assert lo <= v <= hi
        assert hi - lo < Fraction(1, 10**9)


def test_self_test_audits_structured_conv_nets_soundly():
    """The self-test's second conv net keeps Conv2d / MaxPool2d nodes: its proved claims are
    not beaten by sampling and PGD, its counterexamples reproduce."""
    s = self_test(n_networks=0, n_conv=2, seed=3)
    assert s.n_by_activation.get("conv nodes") == 1
    assert s.unsound == [] and s.not_reproduced == []
    assert s.n_proved > 0


def test_forward_linear_bounds_through_conv_equal_the_dense_lowering():
    """The conv applied to the coefficient images gives the dense matrix's forward linear
    bounds (same relaxations), up to rounding."""
    conv, dense = _image_nets(6, pool=False)
    xlo, xhi = _boxes(7, b=1, radius=0.1)
    lc, ld = forward_linear_bounds(conv, xlo, xhi), forward_linear_bounds(dense, xlo, xhi)
    for k in ("c1", "r1", "c2", "r2", "fc"):
        for f in ("al", "cl", "au", "cu", "lo", "hi"):
            torch.testing.assert_close(getattr(lc[k], f), getattr(ld[k], f), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("pool", [False, True])
def test_image_bounds_hold_and_are_tighter_than_intervals(pool):
    """Never beaten by 3,000 sampled points and the box corners' neighbourhood; inside the
    interval bounds at every node; strictly tighter somewhere behind the first layer (so the
    check can fail if the relaxation did nothing)."""
    conv, _ = _image_nets(8, pool=pool, scale=1.5)
    xlo, xhi = _boxes(9, b=3, radius=0.08)
    ib, lb = interval_bounds(conv, xlo, xhi), image_bounds(conv, xlo, xhi)
    g = torch.Generator().manual_seed(10)
    u = torch.rand(1000, 3, 64, generator=g, dtype=torch.float64)
    u[:200] = u[:200].round()  # corners
    xs = xlo + u * (xhi - xlo)  # (1000, B, 64)
    values = conv.forward_all(xs.reshape(-1, 64))
    gained = 0.0
    for k, (lo, hi) in lb.items():
        v = values[k].reshape(1000, 3, -1) if k in values else xs
        assert bool((v >= lo - 1e-12).all()) and bool((v <= hi + 1e-12).all()), k
        ilo, ihi = ib[k]
        assert bool((lo >= ilo).all()) and bool((hi <= ihi).all()), k
        gained = max(gained, float(((ihi - ilo) - (hi - lo)).max()))
    assert gained > 1e-3


@pytest.mark.parametrize("pool", [False, True])
def test_a_passed_deadline_keeps_interval_bounds_which_still_hold_every_sample(pool):
    """Past its deadline the image pass stops tightening box by box (a 28x28 conv box takes
    seconds): what it returns is the interval bounds, never tighter than the full pass, and
    every sampled point's outputs and margins lie inside both (CROWN's margins with and without
    tightening: sound either way, not ordered, as the relaxations change with the bounds)."""
    conv, _ = _image_nets(6, pool=pool)
    xlo, xhi = _boxes(7, b=3)
    late = image_bounds(conv, xlo, xhi, deadline=0.0)
    full = image_bounds(conv, xlo, xhi)
    ival = interval_bounds(conv, xlo, xhi)
    for k, (lo, hi) in full.items():
        assert torch.equal(late[k][0], ival[k][0]) and torch.equal(late[k][1], ival[k][1])
        assert (late[k][0] <= lo).all() and (late[k][1] >= hi).all()
    g = torch.Generator().manual_seed(8)
    u = torch.rand(200, *xlo.shape, generator=g, dtype=torch.float64)
    x = (xlo + u * (xhi - xlo)).reshape(-1, 64)
    y = conv(x).reshape(200, 3, -1)
    for bounds in (late, full):
        lo, hi = bounds[conv.output]
        assert (y >= lo - 1e-12).all() and (y <= hi + 1e-12).all()
    rows = margin_rows(torch.tensor([0, 1, 2]), 3)
    fast = margin_upper(conv, dict(ival), rows, xlo, xhi, deadline=0.0)
    tight = margin_upper(conv, dict(ival), rows, xlo, xhi)
    margins = torch.einsum("bkm,sbm->sbk", rows, y)
    assert (margins <= fast + 1e-12).all() and (margins <= tight + 1e-12).all()
