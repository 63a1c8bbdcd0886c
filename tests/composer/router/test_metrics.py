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
    # slot a right on every task, so every slot is right where b is: half the tasks
    assert out["all_matched"] == pytest.approx(0.5)


def test_all_matched_counts_tasks_right_in_every_slot_by_hand():
    truth = {"f": [0, 0, 1, 1, 0, 1], "g": [0, 1, 0, 1, 1, 0]}
    # f's candidates: 1 <- value 0, 0 <- value 1 (one error, task 5); g: renamed, error on task 2
    choices = {"a": [1, 1, 0, 0, 1, 1], "b": [3, 2, 2, 2, 2, 3]}
    factors = {"f": ("sine", "bump"), "g": ("square", "cos")}
    out = routing_purity(choices, truth, factors, {"a": 2, "b": 4})
    assert out["slots"]["a"]["matching"] == {"sine": 1, "bump": 0}
    assert out["slots"]["b"]["matching"] == {"square": 3, "cos": 2}
    assert out["slots"]["a"]["accuracy"] == pytest.approx(5 / 6)
    assert out["slots"]["b"]["accuracy"] == pytest.approx(5 / 6)
    assert out["all_matched"] == pytest.approx(4 / 6)  # tasks 2 and 5 each miss one slot


def _set_case(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    tf = rng.integers(0, 4, n).tolist()
    tg = rng.integers(0, 3, n).tolist()
    return tf, tg


def test_set_purity_is_exact_for_a_perfect_routing_with_swapped_banks_and_renamed_candidates():
    from metacompose.router.metrics import set_purity

    tf, tg = _set_case(0)
    factors = {"f": ("a", "b", "c", "d"), "g": ("p", "q", "r")}
    # bank f holds g's values (renamed 2, 0, 1), bank g holds f's (renamed 3, 1, 0, 2)
    choices = {"f": [[2, 0, 1][v] for v in tg], "g": [[3, 1, 0, 2][v] for v in tf]}
    out = set_purity(choices, {"f": tf, "g": tg}, factors, {"f": 3, "g": 4})
    assert out["accuracy"] == {"f": 1.0, "g": 1.0} and out["joint_accuracy"] == 1.0
    assert out["matching"]["f[2]"] == "g=p" and out["matching"]["g[3]"] == "f=a"
    # the per-slot score of the same routing is near chance: slots were swapped
    per_slot = routing_purity(choices, {"f": tf, "g": tg}, factors, {"f": 3, "g": 4})
    assert per_slot["slots"]["f"]["accuracy"] < 0.6


def test_set_purity_counts_planted_errors_exactly():
    from metacompose.router.metrics import set_purity

    tf, tg = _set_case(1, n=100)
    factors = {"f": ("a", "b", "c", "d"), "g": ("p", "q", "r")}
    choices = {"f": list(tf), "g": list(tg)}
    wrong = [3, 17, 41, 42, 90]  # g's candidate moved to another value on these tasks
    for t in wrong:
        choices["g"][t] = (tg[t] + 1) % 3
    out = set_purity(choices, {"f": tf, "g": tg}, factors, {"f": 4, "g": 3})
    assert out["accuracy"]["f"] == 1.0
    assert out["accuracy"]["g"] == pytest.approx(0.95)
    assert out["joint_accuracy"] == pytest.approx(0.95)


def test_set_purity_scores_a_bank_that_mixes_both_factors():
    """One bank holds a value of each factor: a per-slot matching cannot score it, the set can."""
    from metacompose.router.metrics import set_purity

    tf = [0, 0, 1, 1] * 5
    tg = [0, 1, 0, 1] * 5
    # slot f: candidate 0 <- f=a, candidate 1 <- g=q ; slot g: candidate 0 <- g=p, 1 <- f=b
    f_c, g_c = [], []
    for a, b in zip(tf, tg):
        pair = {("f", a), ("g", b)}
        f_c.append(0 if ("f", 0) in pair else 1)
        g_c.append(0 if ("g", 0) in pair else 1)
    keep = [t for t in range(20) if (tf[t], tg[t]) in ((0, 1), (1, 0))]  # f=a & g=q, or f=b & g=p
    choices = {"f": [f_c[t] for t in keep], "g": [g_c[t] for t in keep]}
    truth = {"f": [tf[t] for t in keep], "g": [tg[t] for t in keep]}
    out = set_purity(choices, truth, {"f": ("a", "b"), "g": ("p", "q")}, {"f": 2, "g": 2})
    assert out["joint_accuracy"] == 1.0
    assert set(out["matching"].values()) == {"f=a", "f=b", "g=p", "g=q"}
