"""How each true primitive is covered by a bank's candidates (router/bank_coverage.py), against
the float64 numpy reference of ``bank_testing.py`` (its bank, curves and least squares)."""

import numpy as np
import pytest
import torch
from bank_testing import GRID, X, bank, curves, ref_residual

from metacompose.router.bank_coverage import gaps, match, primitive_coverage
from metacompose.tasks.primitives import INNER


def test_coverage_finds_the_values_the_matched_candidate_misses_and_who_holds_them():
    """The vee's own candidate reaches corners in [-0.6, 0.6] only: p = 0, 0.1, 0.9, 1 (corners
    -1, -0.8, 0.8, 1) are missed, and the corner at 1 is the second candidate's at context 0.8."""
    h = curves()
    covs = [primitive_coverage(bank(), INNER[n], n, x=torch.tensor(X), grid=torch.tensor(GRID),
                               params=11, offset=False) for n in ("vee", "step")]  # fmt: skip
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
    (line,) = gaps(covs, match(covs))
    assert line.startswith("vee (candidate 0): within 0.01 at 7 of 11 values")
    assert line.endswith("reproduced instead by candidate 1 (unmatched's) at p=1.00")
