"""Outward rounding of floats into exact rationals, so that facts handed to z3 are never too tight.

A float64 is an exact dyadic rational, but the float *computations* that produced it (a bound, a
norm, a logarithm) carry rounding error. Every fact therefore enters z3 as a rational moved
outward: an upper bound goes up, a lower bound goes down, by ``ulps`` units in the last place,
then is replaced by the simplest rational (smallest denominator) in a small outward slack, so that
z3 works with short numbers. Non-finite values raise :class:`NonFiniteError` (the caller turns
that into ``unknown``, never into a proof).
"""

from __future__ import annotations

import math
from fractions import Fraction

import z3

DEFAULT_ULPS = 4
"""Outward steps applied to every fact: covers the <= 1 ulp error of libm's log/exp and of a
final float rounding, with room to spare."""

DEFAULT_SIMPLIFY_REL = 2.0**-40
"""Relative outward slack in which the simplest rational is chosen (keeps z3's numbers short)."""


class NonFiniteError(ValueError):
    """A NaN or an infinity where a finite bound was needed."""


def simplest_between(lo: Fraction, hi: Fraction) -> Fraction:
    """The rational with the smallest denominator in the closed interval ``[lo, hi]``.

    Continued-fraction (Stern-Brocot) descent; iterative so that deep expansions cannot overflow
    the recursion limit.
    """
    if lo > hi:
        raise ValueError(f"simplest_between needs lo <= hi, got {lo} > {hi}")
    if lo <= 0 <= hi:
        return Fraction(0)
    sign = 1
    if hi < 0:
        lo, hi, sign = -hi, -lo, -1
    # Convergents p/q of the common continued-fraction prefix of lo and hi; a = an/ad and
    # b = bn/bd are kept as integer pairs (Fraction arithmetic would normalise every step).
    p0, q0, p1, q1 = 0, 1, 1, 0
    an, ad, bn, bd = lo.numerator, lo.denominator, hi.numerator, hi.denominator
    while True:
        f = an // ad
        exact = f * ad == an
        if exact or (f + 1) * bd <= bn:  # an integer lies in [a, b]: take the smallest one
            t = f if exact else f + 1
            return sign * Fraction(t * p1 + p0, t * q1 + q0)
        p0, q0, p1, q1 = p1, q1, f * p1 + p0, f * q1 + q0
        # a, b <- 1 / (b - f), 1 / (a - f)
        an, ad, bn, bd = bd, bn - f * bd, ad, an - f * ad


def _check_finite(x: float) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise NonFiniteError(f"cannot round a non-finite value ({x!r}) into a rational fact")
    return x


def rational_upper(
    x: float, *, ulps: int = DEFAULT_ULPS, simplify_rel: float = DEFAULT_SIMPLIFY_REL
) -> Fraction:
    """An exact rational ``q >= x + ulps * ulp(x)`` (upper bounds round up, never down).

    Works beyond the float range: ``rational_upper(1.7976931348623157e308)`` exceeds the largest
    float. Subnormals and zero step by the smallest subnormal (``math.ulp(0.0)``).
    """
    x = _check_finite(x)
    step = Fraction(math.ulp(x))
    base = Fraction(x) + ulps * step
    if simplify_rel <= 0.0:
        return base
    slack = abs(base) * Fraction(simplify_rel) + (step if x == 0.0 else 0)
    return simplest_between(base, base + slack)


def rational_lower(
    x: float, *, ulps: int = DEFAULT_ULPS, simplify_rel: float = DEFAULT_SIMPLIFY_REL
) -> Fraction:
    """An exact rational ``q <= x - ulps * ulp(x)`` (lower bounds round down, never up)."""
    return -rational_upper(-float(x), ulps=ulps, simplify_rel=simplify_rel)


def fraction_to_float_up(q: Fraction) -> float:
    """The smallest float ``>= q`` (``inf`` if ``q`` exceeds the float range)."""
    try:
        f = float(q)
    except OverflowError:
        return math.inf if q > 0 else -math.nextafter(math.inf, 0)
    return f if Fraction(f) >= q else math.nextafter(f, math.inf)


def float_below(q: Fraction) -> float:
    """The largest float ``<= q`` (``-inf`` below the float range): a threshold safe to compare
    float upper bounds against (``ub <= float_below(q)`` implies ``ub <= q``)."""
    try:
        f = float(q)
    except OverflowError:
        return -math.inf if q < 0 else math.nextafter(math.inf, 0)
    return f if Fraction(f) <= q else math.nextafter(f, -math.inf)


def log_upper(q: Fraction, *, ulps: int = DEFAULT_ULPS) -> Fraction:
    """A rational ``>= ln(q)`` for ``q > 0`` (q may be far outside the float range)."""
    if q <= 0:
        raise ValueError(f"log_upper needs a positive argument, got {q}")
    # ln(q) = ln(n) - ln(d): math.log takes big ints exactly (no float conversion of the ratio).
    return rational_upper(math.log(q.numerator) - math.log(q.denominator), ulps=ulps + 4)


def log_lower(q: Fraction, *, ulps: int = DEFAULT_ULPS) -> Fraction:
    """A rational ``<= ln(q)`` for ``q > 0``."""
    if q <= 0:
        raise ValueError(f"log_lower needs a positive argument, got {q}")
    return rational_lower(math.log(q.numerator) - math.log(q.denominator), ulps=ulps + 4)


def exp_upper(q: Fraction, *, ulps: int = DEFAULT_ULPS) -> Fraction:
    """A rational ``>= exp(q)``; raises :class:`NonFiniteError` if it overflows float64."""
    return rational_upper(math.exp(fraction_to_float_up(q)), ulps=ulps)


def z3_rational(q: Fraction) -> z3.RatNumRef:
    """The exact z3 real for a Python rational."""
    return z3.RealVal(f"{q.numerator}/{q.denominator}")
