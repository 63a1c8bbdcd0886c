"""Routing purity against hand-computed values; the Hungarian matching against brute force."""

import itertools
import math

import numpy as np
import pytest

from metacompose.router import normalized_mutual_info
from metacompose.router.metrics import (
    linear_assignment,
    matched_accuracy,
    matched_order,
    routing_purity,
)


def test_nmi_is_one_for_a_relabelling_and_zero_for_independence():
    a = [0, 0, 1, 1, 2, 2]
    assert normalized_mutual_info(a, ["x", "x", "z", "z", "y", "y"]) == pytest.approx(1.0)
    assert normalized_mutual_info([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)


def test_nmi_hand_computed():
    # a = [0,0,1,1], b = [0,0,0,1]: I = H(b) - H(b|a) = h(1/4) - 1/2 * h(1/2) (in nats)
    def h(p):
        return -p * math.log(p) - (1 - p) * math.log(1 - p)

    mi = h(0.25) - 0.5 * h(0.5)
    expected = mi / ((h(0.5) + h(0.25)) / 2)
    assert normalized_mutual_info([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="equal length"):
        normalized_mutual_info([0], [0, 1])


def _brute_force(score):
    """The best total over every one-to-one matching of min(R, C) pairs, by enumeration."""
    r, c = score.shape
    if r <= c:
        return max(
            sum(score[i, p[i]] for i in range(r)) for p in itertools.permutations(range(c), r)
        )
    return _brute_force(score.T)


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (4, 4), (5, 5), (6, 6), (3, 5), (5, 3), (4, 7)])
def test_hungarian_matching_is_optimal_against_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    for trial in range(12):
        # integer counts with ties (trial even) and real scores (odd)
        score = rng.integers(0, 4, shape) if trial % 2 == 0 else rng.normal(size=shape)
        pairs = linear_assignment(score)
        assert len(pairs) == min(shape)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == min(shape)
        total = sum(score[r, c] for r, c in pairs)
        assert total == pytest.approx(_brute_force(score), abs=1e-9)


def test_matched_accuracy_and_order_by_hand():
    # true value (rows) x candidate (columns): value 0 -> candidate 2, 1 -> 0, 2 -> 1 (6+4+3 = 13)
    counts = np.array([[1, 0, 6, 0], [4, 1, 0, 0], [0, 3, 2, 3]])
    acc, pairs = matched_accuracy(counts)
    assert pairs in ([(0, 2), (1, 0), (2, 1)], [(0, 2), (1, 0), (2, 3)])
    assert acc == pytest.approx(13 / 20)
    rows, cols, acc2 = matched_order(counts)
    assert rows == [0, 1, 2] and cols[:3] == [c for _, c in pairs] and sorted(cols) == [0, 1, 2, 3]
    assert acc2 == acc
    # more values than candidates: the unmatched value goes last
    rows, cols, _ = matched_order(np.array([[0, 1], [5, 0], [0, 4]]))
    assert rows == [1, 2, 0] and cols == [0, 1]


def test_routing_purity_pairs_slots_with_factors_in_order():
    # slot a routes f perfectly up to renaming; slot b is constant
    choices = {"a": [2, 2, 0, 0, 1, 1], "b": [0, 0, 0, 0, 0, 0]}
    truth = {"f": [0, 0, 1, 1, 2, 2], "g": [0, 1, 0, 1, 0, 1]}
    factors = {"f": ("sine", "bump", "step"), "g": ("square", "cos")}
    out = routing_purity(choices, truth, factors, {"a": 3, "b": 2})
    assert out["tasks"] == 6
    a, b = out["slots"]["a"], out["slots"]["b"]
    assert a["factor"] == "f" and a["nmi"] == pytest.approx(1.0) and a["accuracy"] == 1.0
    assert a["matching"] == {"sine": 2, "bump": 0, "step": 1}
    assert b["factor"] == "g" and b["nmi"] == 0.0 and b["accuracy"] == pytest.approx(0.5)
    joint_c = list(zip(choices["a"], choices["b"]))
    joint_t = list(zip(truth["f"], truth["g"]))
    assert out["joint_nmi"] == pytest.approx(normalized_mutual_info(joint_c, joint_t))
