"""Closed-form roots of ``f'(x) = a``: the brackets they give hold a root, and the line offsets
built on them are sound against an independent mpmath reference (the extremes of
``f(x) - a x`` at 50 digits: endpoints, cuts and every root of ``f' = a`` on the interval)."""

import dataclasses
import itertools

import mpmath
import pytest
import torch

from metacompose.symbolic import activations as A

WITH_ROOT = sorted(k for k, m in A.KINDS.items() if m.root is not None)
MP_F = {
    "tanh": (mpmath.tanh, lambda x: 1 - mpmath.tanh(x) ** 2),
    "sigmoid": (
        lambda x: 1 / (1 + mpmath.exp(-x)),
        lambda x: mpmath.exp(-x) / (1 + mpmath.exp(-x)) ** 2,
    ),
    "softplus": (lambda x: mpmath.log1p(mpmath.exp(x)), lambda x: 1 / (1 + mpmath.exp(-x))),
    "sin": (mpmath.sin, mpmath.cos),
    "cos": (mpmath.cos, lambda x: -mpmath.sin(x)),
}


def _cases(kind: str, n: int, seed: int):
    """Intervals of many widths and slopes inside ``f'``'s range on them (so roots exist)."""
    g = torch.Generator().manual_seed(seed)
    m = A.get(kind)
    lo = torch.randn(n, generator=g, dtype=torch.float64) * 4
    w = torch.tensor([1e-7, 0.01, 0.3, 1.0, 3.0, 7.0], dtype=torch.float64)
    hi = lo + w.repeat(n // w.numel() + 1)[:n]
    t = torch.rand(n, generator=g, dtype=torch.float64)
    return lo, hi, m.df(lo + t * (hi - lo))


def _mp_extremes(kind: str, lo: float, hi: float, a: float) -> tuple:
    """min and max of ``f(x) - a x`` on ``[lo, hi]`` in 50-digit arithmetic."""
    f, df = MP_F[kind]
    m = A.get(kind)
    cuts = m.cuts(torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64))
    pts = [mpmath.mpf(lo), *(mpmath.mpf(float(c)) for c in cuts.flatten()), mpmath.mpf(hi)]
    cand = list(pts)
    for p, q in itertools.pairwise(pts):  # f' is monotone on each piece: bisect in mpmath
        hp, hq = df(p) - a, df(q) - a
        if p < q and hp * hq < 0:
            for _ in range(200):
                mid = (p + q) / 2
                if (df(mid) - a) * hp > 0:
                    p = mid
                else:
                    q = mid
            cand.append(p)
    vals = [f(x) - a * x for x in cand]
    return min(vals), max(vals)


@pytest.mark.parametrize("kind", WITH_ROOT)
def test_line_offsets_with_closed_form_roots_are_sound_against_mpmath(kind):
    lo, hi, a = _cases(kind, 120, seed=1)
    b_lo, b_hi = A.line_offsets(kind, lo, hi, a)
    with mpmath.workdps(50):
        for i in range(lo.shape[0]):
            g_min, g_max = _mp_extremes(kind, float(lo[i]), float(hi[i]), mpmath.mpf(float(a[i])))
            assert mpmath.mpf(float(b_hi[i])) >= g_max, (kind, i)
            assert mpmath.mpf(float(b_lo[i])) <= g_min, (kind, i)
            # tight: the slack is far below the widths that matter for branch and bound
            assert float(b_hi[i]) - float(g_max) < 1e-9 * (1 + abs(float(g_max))) + 1e-10
            assert float(g_min) - float(b_lo[i]) < 1e-9 * (1 + abs(float(g_min))) + 1e-10


@pytest.mark.parametrize("kind", WITH_ROOT)
def test_closed_form_brackets_hold_a_root_and_match_bisection(kind):
    lo, hi, a = _cases(kind, 600, seed=2)
    m = A.get(kind)
    pts = torch.cat([lo[:, None], m.cuts(lo, hi), hi[:, None]], -1)
    p0, p1 = pts[:, :-1], pts[:, 1:]
    d0, d1 = m.df(p0), m.df(p1)
    p, q, has, hp_out, hq_out = A._find_roots(m, p0, p1, a[:, None], d0, d1)
    bisect = dataclasses.replace(m, root=None)
    bp, bq, bhas, _, _ = A._find_roots(bisect, p0, p1, a[:, None], d0, d1)
    assert torch.equal(has, bhas)
    assert int(has.sum()) > 300
    hp, hq = m.df(p) - a[:, None], m.df(q) - a[:, None]
    assert torch.equal(hp[has], hp_out[has]) and torch.equal(hq[has], hq_out[has])
    h0 = d0 - a[:, None]
    assert bool(((hp * h0 > 0) & (hq * h0 <= 0) & (p0 <= p) & (q <= p1))[has].all())
    # both brackets hold the same (unique) root: they overlap
    assert bool(((p <= bq) & (bp <= q))[has].all())


def test_a_wrong_guess_falls_back_to_bisection():
    m = dataclasses.replace(A.get("tanh"), root=lambda p0, p1, a: p0 + 0.123)
    lo = torch.tensor([[-3.0, 0.0]], dtype=torch.float64)
    hi = torch.tensor([[0.0, 3.0]], dtype=torch.float64)
    a = torch.tensor([[0.5]], dtype=torch.float64)
    p, q, has, _, _ = A._find_roots(m, lo, hi, a, m.df(lo), m.df(hi))
    root = torch.atanh(torch.tensor(0.5**0.5, dtype=torch.float64))
    assert bool(has.all())
    assert float(p[0, 1]) <= float(root) <= float(q[0, 1])
    assert float(p[0, 0]) <= -float(root) <= float(q[0, 0])
    assert float((q - p).max()) < 1e-9


@pytest.mark.parametrize("kind", ["sin", "cos"])
def test_periodic_cuts_hold_every_extremum_of_the_derivative(kind):
    """Every ``offset + k pi`` inside ``[x0, u]`` (found in 50-digit arithmetic) is a cut or an
    end point, for batches whose widest interval decides how many cuts are made."""
    offset = mpmath.mpf(0) if kind == "sin" else mpmath.pi / 2
    g = torch.Generator().manual_seed(3)
    m = A.get(kind)
    for widest in (0.01, 1.0, 3.2, 6.5, 9.4):
        lo = torch.randn(300, generator=g, dtype=torch.float64) * 6
        lo[:50] = torch.arange(-25, 25, dtype=torch.float64) * torch.pi  # at float multiples
        w = torch.rand(300, generator=g, dtype=torch.float64) * widest
        w[0] = widest
        hi = lo + w
        cuts = m.cuts(lo, hi)
        with mpmath.workdps(50):
            for i in range(300):
                a, b = mpmath.mpf(float(lo[i])), mpmath.mpf(float(hi[i]))
                k = mpmath.ceil((a - offset) / mpmath.pi)
                while offset + k * mpmath.pi <= b:
                    c = offset + k * mpmath.pi
                    pts = [*cuts[i].tolist(), float(lo[i]), float(hi[i])]
                    gap = min(abs(mpmath.mpf(x) - c) for x in pts)
                    assert gap < 1e-12 * (1 + abs(c)), (kind, widest, i, float(c))
                    k += 1
