"""Compositional family: targets against an independent numpy formula, held-out split discipline."""

import math

import numpy as np
import pytest
import torch

from metacompose.tasks import CompositionalFamily
from metacompose.tasks.compositional import PRESETS, confusability

INNER_NP = {
    "sine": lambda x, p: np.sin((2 + p) * x + math.pi * p),
    "ramp": lambda x, p: (0.25 + 0.2 * p) * x,
    "bump": lambda x, p: 2 * np.exp(-((x - (2 * p - 1)) ** 2)) - 1,
    "step": lambda x, p: np.tanh(3 * (x - (2 * p - 1))),
    "vee": lambda x, p: np.abs(x - (2 * p - 1)) / 2 - 1,
}
OUTER_NP = {
    "linear": lambda u: u,
    "square": lambda u: u**2,
    "relu": lambda u: np.maximum(u, 0),
    "cos": lambda u: np.cos(math.pi * u),
    "abs": np.abs,
    "sin_pi": lambda u: np.sin(math.pi * u),
    "cos_2pi": lambda u: np.cos(2 * math.pi * u),
    "sin_2pi": lambda u: np.sin(2 * math.pi * u),
    "squash": lambda u: np.tanh(3 * u),
}


def test_targets_match_the_formula_and_info():
    fam = CompositionalFamily()
    b = fam.sample(
        64, shots=5, query=6, generator=torch.Generator().manual_seed(0), split="test", subset="all"
    )
    x = torch.cat([b.support_x, b.query_x], 1).double().numpy()
    y = torch.cat([b.support_y, b.query_y], 1).double().numpy()
    for t in range(64):
        f, g = fam.inner[int(b.info["f"][t])], fam.outer[int(b.info["g"][t])]
        p, a = float(b.info["param"][t]), float(b.info["amplitude"][t])
        np.testing.assert_allclose(
            y[t], a * OUTER_NP[g](INNER_NP[f](x[t], p)), rtol=1e-5, atol=1e-5
        )
        assert int(b.info["held_out"][t]) == (
            (f, g) in {("sine", "square"), ("ramp", "relu"), ("bump", "cos"), ("step", "linear")}
        )


def test_held_out_combinations_never_reach_meta_training():
    fam = CompositionalFamily()
    g = torch.Generator().manual_seed(1)
    train = fam.sample(2000, shots=1, query=1, generator=g, split="train")
    assert int(train.info["held_out"].sum()) == 0
    pairs = set(zip(train.info["f"].tolist(), train.info["g"].tolist()))
    assert pairs == set(fam.seen) and len(pairs) == 12
    held = fam.sample(400, shots=1, query=1, generator=g, split="test", subset="held_out")
    assert set(zip(held.info["f"].tolist(), held.info["g"].tolist())) == set(fam.held_out)
    with pytest.raises(ValueError, match="only drawn for split 'test'"):
        fam.sample(2, shots=1, query=1, generator=g, split="train", subset="held_out")


def test_descriptor_and_bad_arguments():
    fam = CompositionalFamily(descriptor="onehot")
    b = fam.sample(3, shots=2, query=2, generator=torch.Generator().manual_seed(2))
    assert b.descriptor.shape == (3, 8) and torch.all(b.descriptor.sum(1) == 2)
    # "input": the same one-hot appended to every input point; targets do not change
    fam_in = CompositionalFamily(descriptor="input")
    b_in = fam_in.sample(3, shots=2, query=2, generator=torch.Generator().manual_seed(2))
    assert fam_in.in_space.numel == 9 and b_in.descriptor is None
    assert torch.equal(b_in.support_x[..., :1], b.support_x)
    assert torch.equal(b_in.support_y, b.support_y) and torch.equal(b_in.query_y, b.query_y)
    assert torch.equal(b_in.query_x[..., 1:], b.descriptor[:, None, :].expand(-1, 2, -1))
    with pytest.raises(ValueError, match="descriptor must be"):
        CompositionalFamily(descriptor="label")
    with pytest.raises(ValueError, match="inner: unknown primitive 'zigzag'"):
        CompositionalFamily(inner=["zigzag"])
    with pytest.raises(ValueError, match=r"held_out pair \['sine', 'tan'\]"):
        CompositionalFamily(held_out=[["sine", "tan"]])


def test_solo_tasks_show_the_inner_primitive_alone_in_meta_training_only():
    fam = CompositionalFamily(preset="identifiable", descriptor="onehot", solo=0.25)
    assert fam.factors["g"] == (*PRESETS["identifiable"][1], "identity")
    g = torch.Generator().manual_seed(4)
    b = fam.sample(2000, shots=3, query=2, generator=g, split="train")
    solo = (b.info["g"] == 4).numpy()
    assert abs(solo.mean() - 0.25) < 0.03  # binomial sd ~0.01
    x = torch.cat([b.support_x, b.query_x], 1).double().numpy()
    y = torch.cat([b.support_y, b.query_y], 1).double().numpy()
    for t in np.flatnonzero(solo)[:50]:
        f, p = fam.inner[int(b.info["f"][t])], float(b.info["param"][t])
        np.testing.assert_allclose(y[t], INNER_NP[f](x[t], p), rtol=1e-5, atol=1e-5)
        assert float(b.info["amplitude"][t]) == 1.0
    for t in np.flatnonzero(~solo)[:50]:
        f, gn = fam.inner[int(b.info["f"][t])], fam.outer[int(b.info["g"][t])]
        p, a = float(b.info["param"][t]), float(b.info["amplitude"][t])
        np.testing.assert_allclose(
            y[t], a * OUTER_NP[gn](INNER_NP[f](x[t], p)), rtol=1e-5, atol=1e-5
        )
    assert b.descriptor.shape == (2000, 9)
    assert torch.equal(b.descriptor[:, 8].bool(), torch.from_numpy(solo))
    for split, combos in [("val", "seen"), ("test", "seen"), ("test", "held_out")]:
        e = fam.sample(500, shots=3, query=2, generator=g, split=split, subset=combos)
        assert int((e.info["g"] == 4).sum()) == 0
    with pytest.raises(ValueError, match="solo must be a probability"):
        CompositionalFamily(solo=1.0)


def test_outer_solo_tasks_show_the_outer_primitive_alone_on_the_unit_interval():
    fam = CompositionalFamily(preset="identifiable", descriptor="onehot", solo=0.2, solo_outer=0.3)
    assert fam.factors["f"] == (*PRESETS["identifiable"][0], "identity")
    g = torch.Generator().manual_seed(5)
    b = fam.sample(3000, shots=3, query=2, generator=g, split="train")
    alone, solo = (b.info["f"] == 4).numpy(), (b.info["g"] == 4).numpy()
    assert not (alone & solo).any()
    assert abs(alone.mean() - 0.3) < 0.03 and abs(solo.mean() - 0.2) < 0.03  # sd ~0.008
    x = torch.cat([b.support_x, b.query_x], 1).double().numpy()
    y = torch.cat([b.support_y, b.query_y], 1).double().numpy()
    assert np.abs(x[alone]).max() <= 1.0 and np.abs(x[~alone]).max() > 2.5
    for t in np.flatnonzero(alone)[:50]:
        gn, a = fam.outer[int(b.info["g"][t])], float(b.info["amplitude"][t])
        np.testing.assert_allclose(y[t], a * OUTER_NP[gn](x[t]), rtol=1e-5, atol=1e-5)
    assert b.descriptor.shape == (3000, 10)
    assert torch.equal(b.descriptor[:, 4].bool(), torch.from_numpy(alone))
    assert torch.equal(b.descriptor[:, 9].bool(), torch.from_numpy(solo))
    for split, combos in [("val", "seen"), ("test", "seen"), ("test", "held_out")]:
        e = fam.sample(500, shots=3, query=2, generator=g, split=split, subset=combos)
        assert int((e.info["f"] == 4).sum()) == 0
    with pytest.raises(ValueError, match="solo_outer"):
        CompositionalFamily(solo=0.5, solo_outer=0.5)


def test_param_range_narrows_the_inner_parameter():
    g = torch.Generator().manual_seed(1)
    fam = CompositionalFamily(param_range=(0.2, 0.3))
    b = fam.sample(200, shots=4, query=4, generator=g)
    assert float(b.info["param"].min()) >= 0.2 and float(b.info["param"].max()) < 0.3 + 1e-7
    # the default range draws exactly what the family always drew
    a = CompositionalFamily().sample(
        8, shots=3, query=2, generator=torch.Generator().manual_seed(4)
    )
    c = CompositionalFamily(param_range=(0.0, 1.0)).sample(
        8, shots=3, query=2, generator=torch.Generator().manual_seed(4)
    )
    torch.testing.assert_close(a.support_y, c.support_y, rtol=0, atol=0)
    with pytest.raises(ValueError, match="param_range"):
        CompositionalFamily(param_range=(0.5, 1.5))


@pytest.mark.parametrize(
    "preset, outer, held_names",
    [
        (
            "identifiable",
            ("square", "cos", "sin_pi", "squash"),
            {("sine", "squash"), ("bump", "square"), ("step", "sin_pi"), ("vee", "cos")},
        ),
        (
            "identifiable_wavy",
            ("abs", "sin_pi", "cos_2pi", "sin_2pi"),
            {("sine", "abs"), ("bump", "sin_pi"), ("step", "cos_2pi"), ("vee", "sin_2pi")},
        ),
    ],
)
def test_identifiable_presets_targets_and_split(preset, outer, held_names):
    fam = CompositionalFamily(preset=preset)
    assert fam.inner == ("sine", "bump", "step", "vee")
    assert fam.outer == outer
    b = fam.sample(
        64, shots=5, query=6, generator=torch.Generator().manual_seed(3), split="test", subset="all"
    )
    x = torch.cat([b.support_x, b.query_x], 1).double().numpy()
    y = torch.cat([b.support_y, b.query_y], 1).double().numpy()
    for t in range(64):
        f, g = fam.inner[int(b.info["f"][t])], fam.outer[int(b.info["g"][t])]
        p, a = float(b.info["param"][t]), float(b.info["amplitude"][t])
        np.testing.assert_allclose(
            y[t], a * OUTER_NP[g](INNER_NP[f](x[t], p)), rtol=1e-5, atol=1e-5
        )
        assert int(b.info["held_out"][t]) == ((f, g) in held_names)
    # every primitive is still seen in meta-training (with three partners)
    train = fam.sample(2000, shots=1, query=1, generator=torch.Generator().manual_seed(4))
    pairs = set(zip(train.info["f"].tolist(), train.info["g"].tolist()))
    assert pairs == set(fam.seen) and len(pairs) == 12
    assert {f for f, _ in pairs} == {0, 1, 2, 3} and {g for _, g in pairs} == {0, 1, 2, 3}
    # the default is the original set, and explicit lists override the preset
    assert CompositionalFamily().inner == ("sine", "ramp", "bump", "step")
    assert CompositionalFamily(
        preset="identifiable", outer=["abs", "sin_pi"], held_out=[]
    ).outer == (
        "abs",
        "sin_pi",
    )
    with pytest.raises(ValueError, match="unknown preset 'easy'"):
        CompositionalFamily(preset="easy")


def _confusability_reference(inner, outer, *, points, params):
    """Brute force in float64: explicit least-squares fit c0 + c1 * b for every (p, q)."""
    x = np.linspace(-3.0, 3.0, points)
    grid = np.linspace(0.0, 1.0, params)
    pairs = [(f, g) for f in inner for g in outer]
    left = np.zeros((len(pairs), len(pairs)))
    for i, (fa, ga) in enumerate(pairs):
        for j, (fb, gb) in enumerate(pairs):
            if i == j:
                continue
            worst = np.inf
            for p in grid:
                target = OUTER_NP[ga](INNER_NP[fa](x, p))
                best = np.inf
                for q in grid:
                    design = np.stack([np.ones(points), OUTER_NP[gb](INNER_NP[fb](x, q))], 1)
                    coef = np.linalg.lstsq(design, target, rcond=None)[0]
                    resid = np.sum((target - design @ coef) ** 2)
                    best = min(best, resid / np.sum((target - target.mean()) ** 2))
                worst = min(worst, best)
            left[i, j] = worst
    return pairs, left


def test_confusability_matches_brute_force_least_squares():
    inner, outer = ("step", "ramp", "vee"), ("linear", "relu", "sin_pi")
    pairs, left = confusability(inner, outer, points=31, params=5)
    ref_pairs, ref = _confusability_reference(inner, outer, points=31, params=5)
    assert pairs == ref_pairs
    np.testing.assert_allclose(left.numpy(), ref, rtol=1e-6, atol=1e-9)


def test_identifiable_presets_are_identifiable_and_original_is_not():
    off = ~torch.eye(16, dtype=torch.bool)
    pairs, left = confusability(*PRESETS["identifiable"][:2])
    assert float(left[off].min()) > 0.06  # worst pair: vee∘square vs vee∘cos (7%)
    i = pairs.index(("vee", "square"))
    assert 0.06 < float(left[i, pairs.index(("vee", "cos"))]) < 0.08
    _, left = confusability(*PRESETS["identifiable_wavy"][:2])
    assert float(left[off].min()) > 0.35
    pairs, left = confusability(*PRESETS["original"][:2])
    i = pairs.index(("step", "linear"))
    assert float(left[i, pairs.index(("step", "relu"))]) < 0.01
    assert float(left[off].min()) < 0.01
