import dataclasses
from pathlib import Path

import pytest
import torch

from metacompose.symbolic.certify import certify
from metacompose.symbolic.network import Network, NetworkPair
from metacompose.symbolic.results import Estimate, Proved, Violated
from metacompose.symbolic.spec import BoxDomain, DeviationBound, LinfBallDomain, StabilitySpec
from metacompose.symbolic.spec_yaml import load_spec

SPEC = Path(__file__).resolve().parents[2] / "configs" / "bounds" / "sinusoid.yaml"


def _sinusoid_pair(seed: int, scale: float) -> NetworkPair:
    g = torch.Generator().manual_seed(seed)

    def rnd(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    layers = [
        (rnd(40, 1), rnd(40), "relu"),
        (rnd(40, 40) / 6, rnd(40), "relu"),
        (rnd(1, 40) / 6, rnd(1), None),
    ]
    adapted = [(w + scale * rnd(*w.shape), b + scale * rnd(*b.shape), a) for w, b, a in layers]
    return NetworkPair(
        meta=Network.from_layers(layers, prefix="body."),
        adapted=Network.from_layers(adapted, prefix="body."),
    )


def test_sinusoid_spec_all_claims_typed_and_json_ready():
    rep = certify(_sinusoid_pair(0, 0.02), load_spec(SPEC), tier="fast")
    by = rep.by_claim()
    assert set(by) == {
        "trust_region[body].l2",
        "trust_region[body].linf.relative",
        "lipschitz.l2",
        "finite",
        "deviation[0]",
        "output_range[0]",
        "step_size",
    }
    assert isinstance(by["step_size"].outcome, Estimate)  # never proved
    assert all(isinstance(r.outcome, Proved) for k, r in by.items() if k != "step_size")
    js = rep.to_json()
    assert js["status"] == "proved" and all("status" in c for c in js["claims"])


def test_refine_tier_decides_what_fast_leaves_unknown_and_violations_replay():
    pair = _sinusoid_pair(1, 0.05)
    x = torch.linspace(-5, 5, 100001, dtype=torch.float64)[:, None]
    true = float(pair.deviation(x).abs().max())
    dom = BoxDomain(lower=(-5.0,), upper=(5.0,))
    spec = StabilitySpec(domain=dom, deviation=DeviationBound(max_abs=(1.1 * true,)))
    fast = certify(pair, spec, tier="fast", fast_boxes=1).results[0]
    refine = certify(pair, spec, tier="refine", timeout_s=5, fast_boxes=1).results[0]
    assert fast.status == "unknown" and refine.status == "proved" and refine.tier == "refine"
    spec_bad = dataclasses.replace(spec, deviation=DeviationBound(max_abs=(0.9 * true,)))
    res = certify(pair, spec_bad, tier="refine", timeout_s=5).results[0]
    assert isinstance(res.outcome, Violated)
    ce = res.outcome.counterexample
    assert -5 <= float(ce.x) <= 5
    assert float(pair.deviation(ce.x[None]).abs()) == res.outcome.observed > 0.9 * true


def test_linf_ball_domain_with_points_at_run_time():
    pair = _sinusoid_pair(2, 0.01)
    spec = StabilitySpec(
        domain=LinfBallDomain(radius=0.05), deviation=DeviationBound(max_abs=(10.0,)), finite=True
    )
    pts = torch.linspace(-4, 4, 9, dtype=torch.float64)[:, None]
    rep = certify(pair, spec, points=pts)
    assert rep.status == "proved"


def test_non_finite_weights_are_violated_with_a_witness():
    pair = _sinusoid_pair(3, 0.0)
    nodes = {
        nd.name: (nd.op.weight.clone(), nd.op.bias.clone()) for nd in pair.adapted.affine_nodes()
    }
    nodes["body.1"][0][0, 0] = float("nan")
    bad = NetworkPair(meta=pair.meta, adapted=pair.adapted.with_affine(nodes))
    spec = StabilitySpec(domain=BoxDomain(lower=(-1.0,), upper=(1.0,)), finite=True)
    res = certify(bad, spec).results[0]
    assert isinstance(res.outcome, Violated)


def test_bad_inputs_raise():
    pair = _sinusoid_pair(0, 0.0)
    spec = load_spec(SPEC)
    with pytest.raises(ValueError, match="tier"):
        certify(pair, spec, tier="slow")
    with pytest.raises(ValueError, match="known modules"):
        certify(pair, spec, module_params={"head": ([], [])})
