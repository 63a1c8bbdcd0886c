"""Candidates that share curves (bank_overlap), against a float64 reference written out with
numpy: the tables read by ``np.interp`` at the warped inputs and every fit by
``np.linalg.lstsq``."""

import math

import numpy as np
import pytest
import torch
from bank_testing import GRID, X, bank, curves, ref_residual

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.router.bank_overlap import bank_overlap, learner_overlap, residual_fraction


@pytest.mark.parametrize("offset", [False, True])
def test_residual_fraction_equals_least_squares(offset):
    g = np.random.default_rng(0)
    a, b = g.normal(size=(5, 30)) + 2.0, g.normal(size=(4, 30)) - 1.0
    got = residual_fraction(torch.tensor(a), torch.tensor(b), offset=offset).numpy()
    want = [[ref_residual(ai, bj, offset) for bj in b] for ai in a]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_a_flat_curve_has_no_shape_to_share():
    flat = torch.full((1, 20), 3.0, dtype=torch.float64)
    other = torch.linspace(0, 1, 20, dtype=torch.float64)[None]
    assert math.isnan(residual_fraction(flat, other, offset=True).item())


@pytest.mark.parametrize("offset", [False, True])
def test_overlap_counts_the_contexts_another_candidate_reproduces(offset):
    h = curves()
    want = [[0 if a == b else sum(min(ref_residual(h[a, i], h[b, j], offset) for j in range(21))
                                  < 0.01 for i in range(21)) for b in range(3)] for a in range(3)]  # fmt: skip
    got = bank_overlap(bank(), x=torch.tensor(X), grid=torch.tensor(GRID), offset=offset)
    assert [list(r) for r in got.shared] == want
    assert got.shared[1][0] >= 2 and got.shared[0][1] >= 2  # corners 0 and 0.5 in both
    assert got.shared[2] == (0, 0, 0) and got.shared[0][2] == got.shared[1][2] == 0
    assert got.fraction == max(max(r) for r in want) / 21
    assert "candidate 0 reproduces" in got.describe("f-bank")


def test_distinct_candidates_share_nothing_and_say_so():
    b = bank()
    with torch.no_grad():
        b.shift[1] = 0.0  # the second vee now stays a straight line over x at every context
    got = bank_overlap(b, x=torch.tensor(X), grid=torch.tensor(GRID), offset=False)
    assert got.pairs() == [] and got.fraction == 0.0
    assert "no candidate reproduces a curve of another" in got.describe("g-bank")
    with pytest.raises(ValueError, match=r"threshold=1\.5"):
        bank_overlap(b, x=torch.tensor(X), grid=torch.tensor(GRID), offset=False, threshold=1.5)


def test_learner_overlap_reads_the_kept_replicas_banks_by_structure():
    def learner(f, g, structure="sum"):
        return AnnealedSumLearner(f_banks=[f], g_banks=[g], tau_start=1.0, tau_end=0.1,
                                  anneal_steps=1, eval_contexts=21, ridge=1e-4,
                                  structure=structure)  # fmt: skip

    two = learner_overlap(learner(bank(), bank()), low=-3.0, high=3.0)
    assert set(two) == {"f", "g"} and two["f"].shared == two["g"].shared
    b = bank()
    assert set(learner_overlap(learner(b, b), low=-3.0, high=3.0)) == {"bank"}
    assert learner_overlap(learner(bank(), bank(), "chain"), low=-3.0, high=3.0) == {}
    with pytest.raises(ValueError, match="empty"):
        learner_overlap(learner(bank(), bank()), low=1.0, high=1.0)
