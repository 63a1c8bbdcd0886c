"""Seeded, disjoint meta-train / meta-val / meta-test partitions of groups, scripts or classes."""

from __future__ import annotations

import numpy as np

from metacompose.tasks.base import SPLITS


def split_indices(
    n: int, *, fractions: tuple[float, float, float], seed: int
) -> dict[str, np.ndarray]:
    """Partition ``range(n)`` into "train", "val" and "test" by a seeded shuffle.

    Split sizes are ``round(n * fraction)`` for val and test (at least 1 each), the rest is train.

    Raises:
        ValueError: ``fractions`` not 3 numbers > 0 summing to 1, ``n`` below 3, or no item left
            for train.

    Returns:
        Sorted int64 index arrays; every index is in exactly one split.
    """
    # every split needs a share: a zero one would still get an item (sizes are at least 1)
    if (
        len(fractions) != 3
        or not all(f > 0 for f in fractions)
        or not abs(sum(fractions) - 1) <= 1e-6
    ):
        raise ValueError(
            f"fractions={list(fractions)}: must be 3 numbers > 0 (train, val, test) summing to 1"
        )
    if n < 3:
        raise ValueError(f"need at least 3 items to make train/val/test splits, got {n}")
    n_val = max(1, round(n * fractions[1]))
    n_test = max(1, round(n * fractions[2]))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"fractions={list(fractions)}: {n} items leave no meta-train split")
    perm = np.random.default_rng(seed).permutation(n)
    bounds = {
        "train": (0, n_train),
        "val": (n_train, n_train + n_val),
        "test": (n_train + n_val, n),
    }
    return {s: np.sort(perm[bounds[s][0] : bounds[s][1]]).astype(np.int64) for s in SPLITS}
