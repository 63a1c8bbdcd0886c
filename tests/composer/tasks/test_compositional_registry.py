"""The primitive registry, the sum structure, parametric outer primitives, subsets and the
confusability check on construction, against independent numpy formulas and brute force."""

import logging
import math

import numpy as np
import pytest
import torch

from metacompose.config import load_config
from metacompose.tasks import CompositionalFamily
from metacompose.tasks.confusability import confusability
from metacompose.tasks.primitives import INNER, OUTER

C = lambda p: 2 * p - 1  # noqa: E731  (a centre in -1..1)
INNER_NP = {
    "sine": lambda x, p: np.sin((2 + p) * x + math.pi * p),
    "ramp": lambda x, p: (0.25 + 0.2 * p) * x,
    "bump": lambda x, p: 2 * np.exp(-((x - C(p)) ** 2)) - 1,
    "step": lambda x, p: np.tanh(3 * (x - C(p))),
    "vee": lambda x, p: np.abs(x - C(p)) / 2 - 1,
    "parabola": lambda x, p: (x - C(p)) ** 2 / 8 - 1,
    "saw": lambda x, p: 2 * np.mod(x / 2 + p, 1.0) - 1,
    "sinc": lambda x, p: 2 * np.sinc(x - C(p)) - 0.5,  # numpy's sinc is sin(pi t) / (pi t)
    "chirp": lambda x, p: np.sin((0.5 + 0.5 * p) * x**2),
    "cosine": lambda x, p: np.cos((1 + p) * x),
}
OUTER_NP = {
    "linear": lambda u, p: u,
    "square": lambda u, p: u**2,
    "relu": lambda u, p: np.maximum(u, 0),
    "cos": lambda u, p: np.cos(math.pi * u),
    "abs": lambda u, p: np.abs(u),
    "sin_pi": lambda u, p: np.sin(math.pi * u),
    "cos_2pi": lambda u, p: np.cos(2 * math.pi * u),
    "sin_2pi": lambda u, p: np.sin(2 * math.pi * u),
    "squash": lambda u, p: np.tanh(3 * u),
    "sin_freq": lambda u, p: np.sin((1 + p) * math.pi * u),
    "cos_freq": lambda u, p: np.cos((1 + p) * math.pi * u),
    "square_shift": lambda u, p: (u - p + 0.5) ** 2,
    "relu_shift": lambda u, p: np.maximum(u - p + 0.5, 0),
    "abs_shift": lambda u, p: np.abs(u - p + 0.5),
    "tanh_gain": lambda u, p: np.tanh((1 + 4 * p) * u),
    "gauss": lambda u, p: np.exp(-(((u - p + 0.5) / 0.5) ** 2)),
    "exp_rate": lambda u, p: np.exp((0.5 + p) * u),
}
WIDE = {
    "inner": ["sine", "step", "sinc", "chirp"],
    "outer": ["sin_freq", "abs_shift", "gauss", "exp_rate"],
    "held_out": [["sine", "exp_rate"], ["step", "sin_freq"], ["sinc", "abs_shift"]],
}
SUMS = {
    "structure": "sum",
    "inner": ["ramp", "step", "vee", "saw"],
    "outer": ["sine", "bump", "sinc", "chirp"],
    "held_out": [["ramp", "chirp"], ["step", "sine"], ["vee", "bump"], ["saw", "sinc"]],
    "check": {"min_distinct": 0.005},
}


def test_registry_has_eight_parametric_primitives_per_slot_matching_numpy():
    assert len(INNER) >= 8 and all(p.param for p in INNER.values())
    assert len([p for p in OUTER.values() if p.param]) >= 8
    assert set(INNER_NP) == set(INNER) and set(OUTER_NP) == set(OUTER)
    x = np.linspace(-3, 3, 61)
    u = np.linspace(-1.5, 1.5, 61)
    for p in (0.0, 0.37, 0.99):
        pt = torch.tensor(p, dtype=torch.float64)
        for name, prim in INNER.items():
            got = prim(torch.from_numpy(x), pt).numpy()
            np.testing.assert_allclose(got, INNER_NP[name](x, p), rtol=1e-12, atol=1e-12)
        for name, prim in OUTER.items():
            got = prim(torch.from_numpy(u), pt if prim.param else None).numpy()
            np.testing.assert_allclose(got, OUTER_NP[name](u, p), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="needs its parameter"):
        OUTER["sin_freq"](torch.zeros(3))


def _all_points(b):
    x = torch.cat([b.support_x, b.query_x], 1).double().numpy()
    return x, torch.cat([b.support_y, b.query_y], 1).double().numpy()


def test_parametric_outer_primitives_draw_their_own_parameter():
    fam = CompositionalFamily(**WIDE)
    b = fam.sample(
        48, shots=5, query=4, generator=torch.Generator().manual_seed(0), split="test", subset="all"
    )
    assert {"param", "param_g"} <= set(b.info)
    assert not torch.equal(b.info["param"], b.info["param_g"])
    x, y = _all_points(b)
    for t in range(48):
        f, g = fam.inner[int(b.info["f"][t])], fam.outer[int(b.info["g"][t])]
        p, q, a = (float(b.info[k][t]) for k in ("param", "param_g", "amplitude"))
        want = a * OUTER_NP[g](INNER_NP[f](x[t], p), q)
        np.testing.assert_allclose(y[t], want, rtol=1e-5, atol=1e-5)


def test_sum_structure_targets_and_held_out_pairs():
    fam = CompositionalFamily(**SUMS)
    assert fam.structure.join == "+" and fam.factors == {"f": tuple(SUMS["inner"]),
                                                         "g": tuple(SUMS["outer"])}  # fmt: skip
    b = fam.sample(
        64, shots=5, query=4, generator=torch.Generator().manual_seed(1), split="test", subset="all"
    )
    x, y = _all_points(b)
    held = {tuple(p) for p in SUMS["held_out"]}
    for t in range(64):
        f, g = fam.inner[int(b.info["f"][t])], fam.outer[int(b.info["g"][t])]
        p, q = float(b.info["param"][t]), float(b.info["param_g"][t])
        a, c = float(b.info["amplitude"][t]), float(b.info["amplitude_g"][t])
        want = a * INNER_NP[f](x[t], p) + c * INNER_NP[g](x[t], q)
        np.testing.assert_allclose(y[t], want, rtol=1e-5, atol=1e-5)
        assert int(b.info["held_out"][t]) == ((f, g) in held)
    assert float(b.info["amplitude_g"].min()) >= 0.5 and float(b.info["amplitude_g"].max()) <= 2
    with pytest.raises(ValueError, match="solo and solo_outer are for structure 'chain'"):
        CompositionalFamily(**SUMS, solo=0.2)
    with pytest.raises(ValueError, match="unknown structure 'product'"):
        CompositionalFamily(structure="product")
    with pytest.raises(ValueError, match="outer: unknown primitive 'linear'"):  # sum: x-primitives
        CompositionalFamily(structure="sum", inner=["sine"], outer=["linear"], held_out=[])


@pytest.mark.parametrize("args", [WIDE, SUMS], ids=["wide", "sums"])
def test_held_out_pairs_never_reach_meta_training_or_validation(args):
    fam = CompositionalFamily(**args)
    g = torch.Generator().manual_seed(2)
    for split in ("train", "val"):
        b = fam.sample(1500, shots=1, query=1, generator=g, split=split)
        pairs = set(zip(b.info["f"].tolist(), b.info["g"].tolist()))
        assert pairs == set(fam.seen) and int(b.info["held_out"].sum()) == 0
    held = fam.sample(300, shots=1, query=1, generator=g, split="test", subset="held_out")
    assert set(zip(held.info["f"].tolist(), held.info["g"].tolist())) == set(fam.held_out)
    assert len(fam.held_out) == len(args["held_out"])


def test_subsets_are_declared_and_checked():
    fam = CompositionalFamily(**SUMS)
    assert fam.subsets == ("seen", "held_out", "all")
    g = torch.Generator().manual_seed(3)
    seen = fam.sample(200, shots=1, query=1, generator=g, split="test", subset="seen")
    assert int(seen.info["held_out"].sum()) == 0
    every = fam.sample(400, shots=1, query=1, generator=g, split="test", subset="all")
    assert 0 < int(every.info["held_out"].sum()) < 400
    with pytest.raises(ValueError, match="subset must be one of"):
        fam.sample(2, shots=1, query=1, generator=g, split="test", subset="unseen")
    with pytest.raises(ValueError, match="only drawn for split 'test'"):
        fam.sample(2, shots=1, query=1, generator=g, split="val", subset="held_out")
    assert CompositionalFamily(preset="identifiable", held_out=[]).subsets == ("seen", "all")


def test_a_confusable_set_is_refused_or_warned_about_in_one_line(caplog):
    # sin_freq at p = 0 *is* sin_pi: vee∘sin_pi is explained exactly by vee∘sin_freq
    bad = {"preset": "identifiable", "outer": ["sin_pi", "sin_freq", "square"], "held_out": []}
    with pytest.raises(ValueError, match=r"vee∘sin_pi and vee∘sin_freq are confusable: .* 0\.00%"):
        CompositionalFamily(**bad, check={"on_confusable": "refuse"})
    with caplog.at_level(logging.WARNING, logger="metacompose.tasks.compositional"):
        CompositionalFamily(**bad)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "confusable" in line and "\n" not in line
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="metacompose.tasks.compositional"):
        CompositionalFamily(**bad, check={"min_distinct": 0.0})  # the check off
        CompositionalFamily(**WIDE, check={"on_confusable": "refuse"})  # >= 3% left: distinct
        CompositionalFamily(**{**SUMS, "check": {**SUMS["check"], "on_confusable": "refuse"}})
        CompositionalFamily(preset="identifiable", check={"on_confusable": "refuse"})
    assert not caplog.records
    # the original preset is known to be confusable (step∘linear vs step∘relu: 0.6% left)
    with pytest.raises(ValueError, match=r"step∘linear and step∘relu .* 0\.61%"):
        CompositionalFamily(check={"on_confusable": "refuse"})
    # a sum of one primitive with itself in both terms: the pair is explained by any other
    with pytest.raises(ValueError, match="confusable"):
        CompositionalFamily(structure="sum", inner=["bump", "step"], outer=["bump", "saw"],
                            held_out=[], check={"on_confusable": "refuse"})  # fmt: skip
    # from K = 10 evenly spaced shots even the identifiable set has pairs that fit each other
    with pytest.raises(ValueError, match=r"sine∘square and sine∘cos .* on 10 points"):
        CompositionalFamily(preset="identifiable", check={"points": 10, "on_confusable": "refuse"})
    with pytest.raises(ValueError, match="on_confusable must be one of"):
        CompositionalFamily(check={"on_confusable": "ignore"})
    with pytest.raises(ValueError, match=r"check: unknown key 'min_distinc'; known: \["):
        CompositionalFamily(check={"min_distinc": 0.1})


def _sum_reference(inner, outer, *, points, params):
    """Brute force: for every target f(p) + g(q) of pair a and every (p', q') of pair b, an explicit
    least-squares fit c0 + c1 f'(p') + c2 g'(q')."""
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
                for q in grid:
                    target = INNER_NP[fa](x, p) + INNER_NP[ga](x, q)
                    best = np.inf
                    for p2 in grid:
                        for q2 in grid:
                            design = np.stack([np.ones(points), INNER_NP[fb](x, p2),
                                               INNER_NP[gb](x, q2)], 1)  # fmt: skip
                            coef = np.linalg.lstsq(design, target, rcond=None)[0]
                            resid = np.sum((target - design @ coef) ** 2)
                            best = min(best, resid / np.sum((target - target.mean()) ** 2))
                    worst = min(worst, best)
            left[i, j] = worst
    return pairs, left


def test_sum_confusability_matches_brute_force_least_squares():
    inner, outer = ("step", "vee"), ("bump", "sinc")
    pairs, left = confusability(inner, outer, structure="sum", points=15, params=3)
    ref_pairs, ref = _sum_reference(inner, outer, points=15, params=3)
    assert pairs == ref_pairs
    np.testing.assert_allclose(left.numpy(), ref, rtol=1e-6, atol=1e-9)


def test_new_configs_choose_the_sets_of_these_tests():
    wide = load_config("configs/compositional_wide.yaml").task.args
    assert list(wide.inner) == WIDE["inner"] and list(wide.outer) == WIDE["outer"]
    sums = load_config("configs/sums.yaml").task.args
    assert sums.structure == "sum" and [list(p) for p in sums.held_out] == SUMS["held_out"]
