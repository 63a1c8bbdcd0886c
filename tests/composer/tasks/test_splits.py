import math

import numpy as np
import pytest

from metacompose.tasks.splits import split_indices


@pytest.mark.parametrize("n", [3, 10, 45, 500])
def test_splits_partition_and_sizes(n):
    s = split_indices(n, fractions=(0.6, 0.2, 0.2), seed=3)
    allidx = np.concatenate([s["train"], s["val"], s["test"]])
    assert sorted(allidx.tolist()) == list(range(n))  # disjoint and covering
    assert len(s["val"]) == max(1, round(0.2 * n)) and len(s["test"]) == max(1, round(0.2 * n))


def test_splits_depend_on_seed_only():
    a = split_indices(100, fractions=(0.6, 0.2, 0.2), seed=0)
    b = split_indices(100, fractions=(0.6, 0.2, 0.2), seed=0)
    c = split_indices(100, fractions=(0.6, 0.2, 0.2), seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_splits_bad_input():
    with pytest.raises(ValueError, match="summing to 1"):
        split_indices(10, fractions=(0.5, 0.2, 0.2), seed=0)
    with pytest.raises(ValueError, match="at least 3"):
        split_indices(2, fractions=(0.6, 0.2, 0.2), seed=0)


@pytest.mark.parametrize(
    "fractions", [(1, 0, 0), (0.8, 0.2, 0.0), (1.2, -0.1, -0.1), (0.6, 0.2, math.nan)]
)
def test_splits_refuse_a_split_without_a_share(fractions):
    with pytest.raises(
        ValueError, match=r"must be 3 numbers > 0 \(train, val, test\) summing to 1"
    ):
        split_indices(100, fractions=fractions, seed=0)
