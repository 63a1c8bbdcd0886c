import math
import sys
from fractions import Fraction

import pytest
import z3

from metacompose.symbolic.rounding import (
    NonFiniteError,
    exp_upper,
    fraction_to_float_up,
    log_lower,
    log_upper,
    rational_lower,
    rational_upper,
    simplest_between,
    z3_rational,
)

EDGE_VALUES = [
    0.0,
    -0.0,
    5e-324,  # smallest subnormal
    -5e-324,
    2.2250738585072014e-308,  # smallest normal
    1e-310,  # a subnormal
    0.1,  # not a finite decimal in binary
    -0.1,
    1 / 3,
    2.0 / 3.0,
    1.0,
    1e16 + 2,
    sys.float_info.max,
    -sys.float_info.max,
    math.pi,
]


@pytest.mark.parametrize("x", EDGE_VALUES)
def test_outward_rounding_is_strict_and_close(x):
    up, lo = rational_upper(x), rational_lower(x)
    exact = Fraction(x)
    assert up > exact > lo or (x == 0.0 and up > 0 > lo)
    # never more than a relative 2**-39 (plus a few ulps) away
    slack = abs(exact) * Fraction(2) ** -39 + 8 * Fraction(math.ulp(x))
    assert up - exact <= slack and exact - lo <= slack


def test_max_float_upper_bound_exceeds_float_range():
    up = rational_upper(sys.float_info.max)
    assert up > Fraction(sys.float_info.max)
    assert fraction_to_float_up(up) == math.inf


def test_non_finite_raises():
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(NonFiniteError):
            rational_upper(bad)


def test_simplest_between_against_brute_force():
    # reference: smallest denominator q such that some p/q lies in [a, b]
    for a, b in [
        (Fraction(31, 100), Fraction(32, 100)),
        (Fraction(-7, 3), Fraction(-2, 1)),
        (Fraction(1, 7), Fraction(1, 7)),
        (Fraction(-1, 2), Fraction(1, 3)),
    ]:
        s = simplest_between(a, b)
        assert a <= s <= b
        for q in range(1, s.denominator):
            assert math.floor(b * q) < a * q or math.ceil(a * q) > b * q


def test_log_and_exp_bounds_are_outward():
    for q in [Fraction(1), Fraction(10), Fraction(1, 3), Fraction(2) ** 2000, Fraction(1, 2**2000)]:
        # reference: exact comparison through exp on mpmath-free high-precision route:
        # exp(log_upper(q)) >= q  <=>  log_upper(q) >= ln q, checked with z3-free float margin
        lu, ll = log_upper(q), log_lower(q)
        ln = math.log(q.numerator) - math.log(q.denominator)
        assert ll < ln < lu or (ll < lu and abs(ln) < 1e-300)
    for q in [Fraction(0), Fraction(1), Fraction(-700), Fraction(700)]:
        assert exp_upper(q) > Fraction(math.exp(float(q)))


def test_z3_rational_is_exact():
    q = rational_upper(0.1)
    s = z3.Solver()
    s.add(z3_rational(q) != z3.RealVal(f"{q.numerator}/{q.denominator}"))
    assert s.check() == z3.unsat
