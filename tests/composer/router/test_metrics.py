"""Routing purity (NMI) against hand-computed values."""

import math

import pytest

from metacompose.router import normalized_mutual_info


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
