"""NaN / Inf / overflowing networks: every tier answers (unknown with a reason), never raises."""

import math

import pytest
import torch

from metacompose.symbolic import (
    BoxDomain,
    DeviationBound,
    LipschitzBound,
    Network,
    NetworkPair,
    OutputRange,
    StabilitySpec,
    StepSizeCheck,
    certify,
)
from metacompose.symbolic.exact_tier import exact_check
from metacompose.symbolic.objectives import Objective

BAD = {
    "nan": float("nan"),
    "inf": float("inf"),
    "overflow": 1.7e308,
}  # finite weights, the forward pass overflows


def _pair(act: str, bad: float) -> NetworkPair:
    g = torch.Generator().manual_seed(0)

    def layers():
        return [
            (torch.randn(6, 1, generator=g, dtype=torch.float64), torch.zeros(6), act),
            (torch.randn(6, 6, generator=g, dtype=torch.float64), torch.zeros(6), act),
            (torch.randn(1, 6, generator=g, dtype=torch.float64), torch.zeros(1), None),
        ]

    meta = Network.from_layers(layers())
    lay = layers()
    w = lay[1][0].clone()
    w[0, :] = bad
    lay[1] = (w, lay[1][1], act)
    return NetworkPair(meta=meta, adapted=Network.from_layers(lay))


SPEC = StabilitySpec(
    domain=BoxDomain(lower=(-1.0,), upper=(1.0,)),
    deviation=DeviationBound(max_abs=(0.5,)),
    output_range=OutputRange(lower=(-10.0,), upper=(10.0,)),
    lipschitz=(LipschitzBound(norm="l2", bound=5.0),),
    step_size=StepSizeCheck(step_size=0.01),
)


@pytest.mark.parametrize("tier", ["fast", "refine", "exact"])
@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("act", ["relu", "tanh", "sin"])
def test_every_tier_answers_unknown(tier, bad, act):
    """Huge but finite weights may also be *violated*: only with a finite witness that exceeds
    the limit in exact arithmetic (e.g. tanh saturates, so its outputs stay finite)."""
    pair = _pair(act, BAD[bad])
    rep = certify(pair, SPEC, tier=tier, timeout_s=1.0)
    for r in rep.results:
        if r.claim == "step_size":
            continue  # an estimate of the meta network, which is fine here
        if bad == "overflow" and r.status == "violated":
            assert math.isfinite(r.outcome.observed) and "exact" in r.outcome.counterexample.note
            continue
        assert r.status == "unknown", (r.claim, r.outcome)
        assert r.outcome.reason


@pytest.mark.parametrize("bad", sorted(BAD))
def test_exact_tier_on_a_deviation_only_spec(bad):
    pair = _pair("relu", BAD[bad])
    lo, hi = -torch.ones(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)
    res = exact_check(pair, Objective("deviation", 0), 0.5, lo, hi, timeout_s=2)
    assert res.status in ("unknown", "violated")
    if bad != "overflow":
        assert res.status == "unknown"


def test_non_finite_meta_network_step_size_is_unknown():
    pair = _pair("relu", float("nan"))
    pair = NetworkPair(meta=pair.adapted, adapted=pair.meta)
    spec = StabilitySpec(domain=BoxDomain(lower=(-1.0,), upper=(1.0,)), step_size=SPEC.step_size)
    (r,) = certify(pair, spec).results
    assert r.status == "unknown"
