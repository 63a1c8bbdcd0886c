"""Refine and exact tiers on tanh / sin networks, judged by an independent attack."""

import pytest
import torch
from reference import attack_max

from metacompose.symbolic import BoxDomain, DeviationBound, OutputRange, StabilitySpec, certify
from metacompose.symbolic.exact_tier import exact_check
from metacompose.symbolic.objectives import Objective
from metacompose.symbolic.self_test import random_pair


@pytest.mark.parametrize("act", ["tanh", "sin", "gelu"])
@pytest.mark.parametrize("dim", [1, 2])
def test_refine_decides_smooth_claims_and_is_never_beaten(act, dim):
    g = torch.Generator().manual_seed(dim)
    pair = random_pair(g, input_dim=dim, width=6, residual=False, scale=0.2, activation=act)
    lo, hi = -2 * torch.ones(dim, dtype=torch.float64), 2 * torch.ones(dim, dtype=torch.float64)
    dev = Objective("deviation", 0)
    best = attack_max(lambda x: dev.value(pair, x), lo, hi)
    y_hi = attack_max(lambda x: pair.adapted(x)[:, 0], lo, hi)
    dom = BoxDomain(lower=tuple(lo.tolist()), upper=tuple(hi.tolist()))
    for f, expect in ((0.9, "violated"), (1.02, "proved")):
        spec = StabilitySpec(
            domain=dom,
            deviation=DeviationBound(max_abs=(f * best,)),
            output_range=OutputRange(lower=(-1e3,), upper=(y_hi + (f - 1) * abs(y_hi),)),
        )
        rep = certify(pair, spec, tier="refine", timeout_s=5.0)
        for r in rep.results:
            assert r.status == expect, (r.claim, r.outcome)


@pytest.mark.parametrize("act", ["tanh", "sin"])
def test_exact_tier_on_smooth_networks(act):
    g = torch.Generator().manual_seed(11)
    pair = random_pair(g, input_dim=1, width=5, residual=True, scale=0.2, activation=act)
    lo, hi = -2 * torch.ones(1, 1, dtype=torch.float64), 2 * torch.ones(1, 1, dtype=torch.float64)
    dev = Objective("deviation", 0)
    best = attack_max(lambda x: dev.value(pair, x), lo[0], hi[0])
    assert exact_check(pair, dev, 1.01 * best, lo, hi, timeout_s=10).status == "proved"
    assert exact_check(pair, dev, 0.99 * best, lo, hi, timeout_s=10).status == "violated"
    # a tiny budget is unknown, never a wrong answer
    assert exact_check(pair, dev, best, lo, hi, timeout_s=1e-3).status in ("unknown", "violated")
