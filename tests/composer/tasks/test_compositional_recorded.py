"""The compositional presets draw exactly what they drew before the primitive registry and the
sum structure (tests/fixtures/compositional_batches.pt, recorded with the code of fbfe5bd)."""

from pathlib import Path

import torch

from metacompose.tasks import CompositionalFamily
from metacompose.tasks.compositional import PRESETS, confusability

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "compositional_batches.pt"

# (family kwargs, [(split, combos)]) per recorded case
CASES = {
    "original": ({}, [("train", "seen"), ("val", "seen"), ("test", "all"), ("test", "held_out")]),
    "identifiable": ({"preset": "identifiable"}, [("train", "seen"), ("test", "all")]),
    "identifiable_wavy": ({"preset": "identifiable_wavy"}, [("train", "seen"), ("test", "all")]),
    "onehot_solo": (
        {"preset": "identifiable", "descriptor": "onehot", "solo": 0.3},
        [("train", "seen"), ("test", "all")],
    ),
    "duo": (
        {"preset": "identifiable", "descriptor": "onehot", "solo": 0.3, "solo_outer": 0.3},
        [("train", "seen"), ("val", "seen"), ("test", "held_out")],
    ),
    "input": ({"descriptor": "input", "param_range": (0.2, 0.6)}, [("train", "seen")]),
    "lists": (
        {
            "inner": ["vee", "sine"],
            "outer": ["abs", "cos_2pi", "relu"],
            "held_out": [["vee", "abs"]],
        },
        [("train", "seen"), ("test", "all")],
    ),
}


def sample_cases() -> dict[str, torch.Tensor]:
    """Every recorded tensor, by ``case/split/combos/seed/field``."""
    out = {}
    for name, (kwargs, draws) in CASES.items():
        fam = CompositionalFamily(**kwargs)
        for split, combos in draws:
            for seed in (0, 1):
                g = torch.Generator().manual_seed(seed)
                b = fam.sample(7, shots=3, query=2, generator=g, split=split, subset=combos)
                key = f"{name}/{split}/{combos}/{seed}"
                for field in ("support_x", "support_y", "query_x", "query_y", "descriptor"):
                    if getattr(b, field) is not None:
                        out[f"{key}/{field}"] = getattr(b, field)
                for k, v in b.info.items():
                    out[f"{key}/info.{k}"] = v
    for preset, (inner, outer, _) in PRESETS.items():
        out[f"confusability/{preset}"] = confusability(inner, outer, points=41, params=7)[1]
    return out


def test_presets_draw_the_recorded_tensors():
    """The draws (inputs, indices, descriptors, parameters) are bit-identical; a target computed
    through sin/exp/tanh, and a confusability from a least-squares fit, may differ by the last bit
    between CPUs (vectorised math kernels differ), so those get a few ulps: float32 targets 4e-7,
    float64 fits 1e-12, relative to the value's scale."""
    recorded = torch.load(FIXTURE, weights_only=True)
    now = sample_cases()
    assert sorted(now) == sorted(recorded)
    for key, tensor in recorded.items():
        assert now[key].dtype == tensor.dtype, key
        computed = key.endswith("_y") or key.startswith("confusability/")
        if computed and tensor.is_floating_point():
            tol = 4e-7 if tensor.dtype == torch.float32 else 1e-12
            scale = max(1.0, float(tensor.abs().max()))
            torch.testing.assert_close(now[key], tensor, rtol=tol, atol=tol * scale, msg=key)
        else:
            torch.testing.assert_close(now[key], tensor, rtol=0, atol=0, msg=key)
