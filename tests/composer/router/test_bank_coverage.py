"""How each true primitive is covered by a bank's candidates (router/bank_coverage.py), against
the float64 numpy reference of ``bank_testing.py`` (its bank, curves and least squares)."""

import itertools
import math

import numpy as np
import pytest
import torch
from bank_testing import GRID, X, bank, curves, ref_residual

from metacompose.router.bank_coverage import candidate_labels, gaps, match, primitive_coverage
from metacompose.tasks.primitives import INNER


def test_coverage_finds_the_values_the_matched_candidate_misses_and_who_holds_them():
    """The vee's own candidate reaches corners in [-0.6, 0.6] only: p = 0, 0.1, 0.9, 1 (corners
    -1, -0.8, 0.8, 1) are missed, and the corner at 1 is the second candidate's at context 0.8."""
    h = curves()
    covs = [primitive_coverage({"f": bank()}, INNER[n], n, x=torch.tensor(X),
                               grid=torch.tensor(GRID), params=11, offset=False)
            for n in ("vee", "step")]  # fmt: skip
    for cov in covs:
        for i, p in enumerate(np.linspace(0, 1, 11)):
            target = INNER[cov.name](torch.tensor(X), torch.tensor(p, dtype=torch.float64)).numpy()
            for k in range(3):
                best = min(ref_residual(target, h[k, j], False) for j in range(21))
                assert cov.residual[k][i] == pytest.approx(best, rel=1e-9, abs=1e-12)
    assert match(covs) == {"vee": 0, "step": 2}
    vee = covs[0]
    assert vee.reached(0) == [False, False] + [True] * 7 + [False, False]
    assert vee.best()[10] == 1 and vee.context[1][10] == pytest.approx(0.8)
    labels = candidate_labels({"f": bank()})
    (line,) = gaps(covs, match(covs), labels)
    assert line.startswith("vee (f[0]): within 0.01 at 7 of 11 values")
    assert line.endswith("reproduced instead by f[1] (matched to none) at p=1.00")


def test_a_parameter_range_and_more_primitives_than_candidates():
    """Within the family's parameter range only (corners -0.6..0.6: all reached); four primitives
    for three candidates: one is matched to none, and says so."""
    x, grid = torch.tensor(X), torch.tensor(GRID)
    vee = primitive_coverage({"f": bank()}, INNER["vee"], "vee", x=x, grid=grid, params=5,
                             offset=False, param_range=(0.2, 0.8))  # fmt: skip
    assert vee.params == pytest.approx((0.2, 0.35, 0.5, 0.65, 0.8)) and all(vee.reached(0))
    names = ("vee", "step", "sine", "bump")
    covs = [primitive_coverage({"f": bank()}, INNER[n], n, x=x, grid=grid, params=3, offset=True)
            for n in names]  # fmt: skip
    matched = match(covs)
    assert len(matched) == 3 and len(set(matched.values())) == 3

    def score(cov, k):  # as match() scores, written out
        return np.mean([-math.log10(min(1.0, max(r, 1e-12))) for r in cov.residual[k]])

    best = max(
        sum(score(covs[i], k) for k, i in enumerate(rows))
        for rows in itertools.permutations(range(4), 3)
    )  # brute force over matchings
    by = {c.name: c for c in covs}
    assert sum(score(by[n], k) for n, k in matched.items()) == pytest.approx(best, rel=1e-12)
    (unmatched,) = set(names) - set(matched)
    lines = gaps(covs, matched, candidate_labels({"f": bank()}))
    assert f"{unmatched}: no candidate matched (more primitives than candidates)" in lines
