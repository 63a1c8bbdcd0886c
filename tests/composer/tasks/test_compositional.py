"""Compositional family: targets against an independent numpy formula, held-out split discipline."""

import math

import numpy as np
import pytest
import torch

from composer.tasks import CompositionalFamily

INNER_NP = {
    "sine": lambda x, p: np.sin((2 + p) * x + math.pi * p),
    "ramp": lambda x, p: (0.25 + 0.2 * p) * x,
    "bump": lambda x, p: 2 * np.exp(-((x - (2 * p - 1)) ** 2)) - 1,
    "step": lambda x, p: np.tanh(3 * (x - (2 * p - 1))),
}
OUTER_NP = {
    "linear": lambda u: u,
    "square": lambda u: u**2,
    "relu": lambda u: np.maximum(u, 0),
    "cos": lambda u: np.cos(math.pi * u),
}


def test_targets_match_the_formula_and_info():
    fam = CompositionalFamily()
    b = fam.sample(
        64, shots=5, query=6, generator=torch.Generator().manual_seed(0), split="test", combos="all"
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
    held = fam.sample(400, shots=1, query=1, generator=g, split="test", combos="held_out")
    assert set(zip(held.info["f"].tolist(), held.info["g"].tolist())) == set(fam.held_out)
    with pytest.raises(ValueError, match="only drawn for split 'test'"):
        fam.sample(2, shots=1, query=1, generator=g, split="train", combos="held_out")


def test_descriptor_and_bad_arguments():
    fam = CompositionalFamily(descriptor="onehot")
    b = fam.sample(3, shots=2, query=2, generator=torch.Generator().manual_seed(2))
    assert b.descriptor.shape == (3, 8) and torch.all(b.descriptor.sum(1) == 2)
    with pytest.raises(ValueError, match="unknown inner primitive 'saw'"):
        CompositionalFamily(inner=["saw"])
    with pytest.raises(ValueError, match=r"held_out pair \['sine', 'tan'\]"):
        CompositionalFamily(held_out=[["sine", "tan"]])


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
