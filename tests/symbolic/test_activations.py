"""Soundness of the per-activation bounds against dense sampling, and of the mpmath enclosures."""

import mpmath
import pytest
import torch

from metacompose.symbolic import activations as A

KINDS = sorted(A.KINDS)


def _intervals(seed: int):
    g = torch.Generator().manual_seed(seed)
    lo = torch.randn(600, generator=g, dtype=torch.float64) * 4
    widths = torch.tensor([0.0, 1e-6, 0.01, 0.5, 2.0, 8.0, 30.0], dtype=torch.float64)
    return lo, lo + widths.repeat(100)[: lo.shape[0] - 0][:600]


@pytest.mark.parametrize("kind", KINDS)
def test_relaxation_interval_and_derivative_range_are_sound(kind):
    lo, hi = _intervals(0)
    al, bl, au, bu = A.relaxation(kind, lo, hi)
    ilo, ihi = A.interval(kind, lo, hi)
    dlo, dhi = A.derivative_range(kind, lo, hi)
    t = torch.linspace(0, 1, 401, dtype=torch.float64)
    x = lo[:, None] + t * (hi - lo)[:, None]
    m = A.get(kind)
    f, df = m.f(x), m.df(x)
    assert bool((f <= au[:, None] * x + bu[:, None]).all())
    assert bool((f >= al[:, None] * x + bl[:, None]).all())
    assert bool(((f <= ihi[:, None]) & (f >= ilo[:, None])).all())
    assert bool(((df <= dhi[:, None]) & (df >= dlo[:, None])).all())


@pytest.mark.parametrize("kind", KINDS)
def test_relaxation_is_tight_on_small_intervals(kind):
    lo = torch.linspace(-4, 4, 81, dtype=torch.float64)
    hi = lo + 1e-3
    al, bl, au, bu = A.relaxation(kind, lo, hi)
    mid = 0.5 * (lo + hi)
    gap = (au - al) * mid + (bu - bl)
    assert float(gap.max()) < 1e-6  # second order in the width


def test_non_finite_intervals_stay_non_finite():
    lo = torch.tensor([float("nan"), -float("inf"), 0.0], dtype=torch.float64)
    hi = torch.tensor([1.0, 0.0, float("inf")], dtype=torch.float64)
    for kind in KINDS:
        _al, bl, _au, bu = A.relaxation(kind, lo, hi)
        assert not bool(torch.isfinite(bu).any()) and not bool(torch.isfinite(bl).any())


@pytest.mark.parametrize("kind", KINDS)
def test_mpmath_enclosure_contains_the_float_value(kind):
    iv = mpmath.iv
    saved, iv.prec = iv.prec, 200
    try:
        for x in (-30.0, -7.5, -1.3, -1e-8, 0.0, 0.3, 2.0, 9.0, 40.0):
            e = A.enclose(kind, iv.mpf(x))
            f = float(A.get(kind).f(torch.tensor(x, dtype=torch.float64)))
            assert float(e.a) - 1e-15 * (1 + abs(f)) <= f <= float(e.b) + 1e-15 * (1 + abs(f))
            assert float(e.b - e.a) < 1e-30 * abs(f) + 1e-60
    finally:
        iv.prec = saved


@pytest.mark.parametrize("kind", KINDS)
def test_relaxation_and_interval_match_the_separate_calls(kind):
    """The one-pass form (used by the forward and CROWN passes) returns exactly the relaxation
    and the interval bound of the two separate functions."""
    lo, hi = _intervals(4)
    both = A.relaxation_and_interval(kind, lo, hi)
    for got, want in zip(both, (*A.relaxation(kind, lo, hi), *A.interval(kind, lo, hi))):
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
