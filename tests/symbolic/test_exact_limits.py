"""Limits as written: proved/violated are decided against the exact decimal, to the last bit."""

import math
from fractions import Fraction

import pytest
import torch
from reference import exact_max_1d

from metacompose.symbolic import (
    BoxDomain,
    DeviationBound,
    LipschitzBound,
    Network,
    NetworkPair,
    StabilitySpec,
    certify,
    load_spec,
)
from metacompose.symbolic.exact_tier import exact_check
from metacompose.symbolic.objectives import Objective
from metacompose.symbolic.self_test import random_pair
from metacompose.symbolic.spec import ExactFloat, exact_value

TIERS = ("fast", "refine", "exact")


def _scaled_relu(c: float) -> NetworkPair:
    """f_meta = 0, f_adapted = c relu(x) on [0, 1]: the true max deviation is exactly c."""
    one, zero = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    layers = [(one, zero, "relu"), (torch.zeros(1, 1, dtype=torch.float64), zero, None)]
    meta = Network.from_layers(layers)
    layers[1] = (torch.full((1, 1), c, dtype=torch.float64), zero, None)
    return NetworkPair(meta=meta, adapted=Network.from_layers(layers))


def _spec(limit) -> StabilitySpec:
    return StabilitySpec(
        domain=BoxDomain(lower=(0.0,), upper=(1.0,)), deviation=DeviationBound(max_abs=(limit,))
    )


@pytest.mark.parametrize("tier", TIERS)
def test_point_one_relu_is_not_proved_against_one_tenth(tier):
    # max = float(0.1) = 0.1000000000000000055... > 1/10, the limit as written
    res = certify(_scaled_relu(0.1), _spec(0.1), tier=tier, timeout_s=3).results[0]
    assert res.status != "proved"
    if tier != "fast":
        assert res.status == "violated"


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize(
    ("text", "c", "holds"),
    [("4.9e-324", 5e-324, False), ("5e-324", 5e-324, True), ("1e-320", 1e-320, True)],
)
def test_subnormal_limits_are_judged_exactly(tier, text, c, holds):
    assert Fraction(c) != Fraction(text)  # the float and the decimal differ
    res = certify(_scaled_relu(c), _spec(ExactFloat(text)), tier=tier, timeout_s=3).results[0]
    assert res.status != ("violated" if holds else "proved")


def test_yaml_keeps_the_decimal_as_written(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(
        "domain: {box: {lower: [0.0], upper: [1.0]}}\n"
        "deviation: {max_abs: 0.10000000000000000001}\n"
        "lipschitz: [{norm: l2, bound: 4.9e-324}]\n"
    )
    spec = load_spec(p)
    assert exact_value(spec.deviation.max_abs[0]) == Fraction("0.10000000000000000001")
    assert exact_value(spec.lipschitz[0].bound) == Fraction("4.9e-324")
    # written 1e-20 above 1/10: 0.1 relu(x) (max 1/10 + 5.5e-18) still exceeds it
    res = certify(_scaled_relu(0.1), spec, tier="exact", timeout_s=3).by_claim()
    assert res["deviation[0]"].status == "violated"


@pytest.mark.parametrize("seed", range(4))
def test_limits_within_ulps_of_the_true_max(seed):
    g = torch.Generator().manual_seed(seed)
    pair = random_pair(g, input_dim=1, width=5, residual=seed % 2 == 1, scale=0.2)
    true = exact_max_1d(pair, "deviation", -2.0, 2.0)
    u = Fraction(math.ulp(float(true)))
    lo, hi = torch.tensor([[-2.0]], dtype=torch.float64), torch.tensor([[2.0]], dtype=torch.float64)
    for k in (-3, -1, 1, 3):
        exact = true + k * u
        limit = ExactFloat(float(exact), exact)
        outs = [exact_check(pair, Objective("deviation", 0), limit, lo, hi, timeout_s=10)]
        spec = StabilitySpec(
            domain=BoxDomain(lower=(-2.0,), upper=(2.0,)),
            deviation=DeviationBound(max_abs=(limit,)),
        )
        outs += [certify(pair, spec, tier=t, timeout_s=2).results[0].outcome for t in TIERS]
        for o in outs:
            assert o.status != ("violated" if k > 0 else "proved"), (k, o)
        if k < 0:  # the exact tier decides it
            assert outs[0].status == "violated"


def test_lipschitz_limit_at_the_true_slope_is_never_violated():
    """The float difference quotient overshoots the true slope; the exact check must not."""
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        pair = random_pair(g, input_dim=1, width=6, residual=False, scale=0.2)
        net = pair.adapted
        xs = torch.linspace(-2, 2, 20001, dtype=torch.float64)[:, None]
        with torch.no_grad():
            y = net(xs)[:, 0]
        slope = float(((y[1:] - y[:-1]) / (xs[1:, 0] - xs[:-1, 0])).abs().max())
        for limit in (slope, math.nextafter(slope, math.inf)):
            spec = StabilitySpec(
                domain=BoxDomain(lower=(-2.0,), upper=(2.0,)),
                lipschitz=(LipschitzBound(norm="l2", bound=limit),),
            )
            for tier in ("refine", "exact"):
                r = certify(pair, spec, tier=tier, timeout_s=2).results[0]
                if r.status == "violated":  # only with an exact witness
                    ce = r.outcome.counterexample
                    from metacompose.symbolic.exact_eval import quotient_exceeds

                    assert quotient_exceeds(net, ce.x, ce.x2, "l2", exact_value(limit))
