"""Prediction-stability claims on tiny conv nets: proved claims survive PGD and a dense sample,
violated ones carry a point where the top-1 class changes (exactly); conv IR nodes bound samples."""

import torch

from metacompose.symbolic import LinfBallDomain, PredictionStability, StabilitySpec, certify
from metacompose.symbolic.attack import pgd_maximize
from metacompose.symbolic.diff_propagation import propagate_pair
from metacompose.symbolic.exact_eval import evaluate
from metacompose.symbolic.self_test import random_conv_pair
from metacompose.symbolic.spec import domain_boxes


def test_prediction_stability_against_sampling_and_pgd():
    gen = torch.Generator().manual_seed(0)
    pair = random_conv_pair(gen, scale=0.3)
    centres = torch.rand(4, 64, generator=gen, dtype=torch.float64)
    seen = set()
    for radius in (0.001, 0.05, 0.3, 2.0):
        spec = StabilitySpec(
            domain=LinfBallDomain(radius=radius), prediction=PredictionStability(True)
        )
        rep = certify(pair, spec, points=centres)
        lo, hi = domain_boxes(spec.domain, centres)
        for r in rep.results:
            seen.add(r.status)
            b = int(r.claim[r.claim.index("[") + 1 : -1])
            c = int(pair.adapted(centres[b : b + 1]).argmax())
            if r.claim.startswith("prediction_stable") and r.status == "proved":
                u = torch.rand(3000, 64, generator=gen, dtype=torch.float64)
                with torch.no_grad():
                    assert (pair.adapted(lo[b] + u * (hi[b] - lo[b])).argmax(1) == c).all()
                for j in range(3):
                    if j != c:
                        _, v = pgd_maximize(
                            lambda x, j=j, c=c: pair.adapted(x)[:, j] - pair.adapted(x)[:, c],
                            lo[b : b + 1],
                            hi[b : b + 1],
                            generator=gen,
                        )
                        assert v < 0
            if r.status == "violated":
                x = r.outcome.counterexample.x
                assert ((x >= lo[b]) & (x <= hi[b])).all()
                if r.claim.startswith("prediction_stable"):
                    y = evaluate(pair.adapted, x)
                    assert any(y[j][0] >= y[c][1] for j in range(3) if j != c)
    assert "proved" in seen and "violated" in seen


def test_conv_bounds_contain_samples():
    gen = torch.Generator().manual_seed(1)
    pair = random_conv_pair(gen, scale=0.1)
    centres = torch.rand(2, 64, generator=gen, dtype=torch.float64)
    lo, hi = centres - 0.05, centres + 0.05
    with_crown = propagate_pair(pair, lo, hi)[pair.meta.output]
    interval = propagate_pair(pair, lo, hi, crown=False)[pair.meta.output]
    assert (with_crown.diff.hi <= interval.diff.hi + 1e-12).all()
    for b in range(2):
        u = torch.rand(2000, 64, generator=gen, dtype=torch.float64)
        x = lo[b] + u * (hi[b] - lo[b])
        with torch.no_grad():
            ya, d = pair.adapted(x), pair.deviation(x)
        assert (ya <= with_crown.adapted.hi[b]).all() and (ya >= with_crown.adapted.lo[b]).all()
        assert (d <= with_crown.diff.hi[b]).all() and (d >= with_crown.diff.lo[b]).all()
