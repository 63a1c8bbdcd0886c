"""The block restarts' rule (metacompose.training.block_restarts): which replica a phase keeps."""

from __future__ import annotations

import math
import random

import pytest

from metacompose.training.block_restarts import agreement, pick


def test_pick_is_the_most_agreeing_of_the_fits_within_the_factor_brute_force():
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 6)
        fits = [rng.choice([rng.uniform(0.001, 0.02), math.inf, math.nan]) for _ in range(n)]
        agree = [round(rng.uniform(0, 1), 1) for _ in range(n)]  # rounded: ties happen
        finite = [f for f in fits if math.isfinite(f)]
        ok = [
            i
            for i in range(n)
            if not finite or (math.isfinite(fits[i]) and fits[i] <= 1.5 * min(finite))
        ]
        want = min(i for i in ok if agree[i] == max(agree[j] for j in ok))  # ties: lower index
        assert pick(fits, agree, within=1.5) == want


def test_agreement_is_the_mean_nmi_with_the_others():
    a = [0, 0, 1, 1, 2, 2]
    renamed = [5, 5, 3, 3, 4, 4]  # the same partition: NMI 1
    other = [0, 1, 0, 1, 0, 1]  # independent of a on these six: NMI 0
    got = agreement([a, renamed, other])
    assert got[0] == pytest.approx(0.5, abs=1e-12)  # (1 + 0) / 2
    assert got[1] == pytest.approx(0.5, abs=1e-12)
    assert got[2] == pytest.approx(0.0, abs=1e-12)
    assert agreement([a]) == [1.0]
