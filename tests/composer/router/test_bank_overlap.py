"""Candidates that share curves (bank_overlap), against a float64 reference written out with
numpy: the tables read by ``np.interp`` at the warped inputs and every fit by
``np.linalg.lstsq``."""

import math

import numpy as np
import pytest
import torch
from bank_testing import GRID, KNOTS, SPAN, X, bank, curves, ref_residual

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.modules.warp_line import WarpLineBank
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
    got = bank_overlap({"f": bank()}, x=torch.tensor(X), grid=torch.tensor(GRID), offset=offset)
    assert [list(r) for r in got.shared] == want and got.labels == ("f[0]", "f[1]", "f[2]")
    assert got.shared[1][0] >= 2 and got.shared[0][1] >= 2  # corners 0 and 0.5 in both
    assert got.shared[2] == (0, 0, 0) and got.shared[0][2] == got.shared[1][2] == 0
    assert got.fraction == max(max(r) for r in want) / 21
    assert "f[0] reproduces" in got.describe("overlap")


def test_distinct_candidates_share_nothing_and_say_so():
    b = bank()
    with torch.no_grad():
        b.shift[1] = 0.0  # the second vee now stays a straight line over x at every context
    got = bank_overlap({"g": b}, x=torch.tensor(X), grid=torch.tensor(GRID), offset=False)
    assert got.pairs() == [] and got.fraction == 0.0
    assert "no candidate reproduces a curve of another" in got.describe("overlap")
    assert "within 0.4% of" in bank_overlap({"g": b}, x=torch.tensor(X), grid=torch.tensor(GRID),
                                             offset=False, threshold=0.004).describe("o")  # fmt: skip
    with pytest.raises(ValueError, match=r"threshold=1\.5"):
        bank_overlap({"g": b}, x=torch.tensor(X), grid=torch.tensor(GRID), offset=False,
                     threshold=1.5)  # fmt: skip


def other_bank() -> WarpLineBank:
    """Two candidates: a sine, and the same vee as :func:`bank_testing.bank`'s first."""
    u = torch.linspace(-SPAN, SPAN, KNOTS, dtype=torch.float64)
    b = WarpLineBank(count=2, knots=KNOTS, span=SPAN, contexts=21)
    with torch.no_grad():
        b.table.copy_(torch.stack([torch.sin(u), u.abs() / 2 - 1]))
        b.slope.zero_()
        b.shift.copy_(torch.tensor([0.3, -0.6]))
    return b


def test_learner_overlap_reads_both_banks_of_the_kept_replica_at_the_evaluation_grid():
    """The sum's two banks are one set of candidates: g[1] is f[0] (both ways, at every one of
    the 11 evaluation contexts); the kept replica is the second one; the chain and uniform
    routing measure nothing."""

    def learner(fs, gs, **kw):
        return AnnealedSumLearner(f_banks=fs, g_banks=gs, tau_start=1.0, tau_end=0.1,
                                  anneal_steps=1, eval_contexts=11, ridge=1e-4, **kw)  # fmt: skip

    plain = bank()
    with torch.no_grad():
        plain.shift[1] = 0.0
    two = learner([plain, bank()], [WarpLineBank(count=2, knots=KNOTS, span=SPAN), other_bank()])
    two.fit.copy_(torch.tensor([1.0, 0.5]))
    assert two.kept == 1
    got = learner_overlap(two, low=-3.0, high=3.0)
    assert got.labels == ("f[0]", "f[1]", "f[2]", "g[0]", "g[1]") and got.contexts == 11
    assert got.shared[0][4] == got.shared[4][0] == 11
    grid = torch.linspace(-1.0, 1.0, 11)
    alone = bank_overlap({"f": bank()}, x=torch.linspace(-3.0, 3.0, 241), grid=grid, offset=True)
    assert [r[:3] for r in got.shared[:3]] == list(alone.shared)
    b = bank()
    shared = learner_overlap(learner([b], [b]), low=-3.0, high=3.0)
    assert shared.labels == ("bank[0]", "bank[1]", "bank[2]")
    assert (
        learner_overlap(learner([bank()], [bank()], structure="chain"), low=-3.0, high=3.0) is None
    )
    uniform = learner([bank()], [bank()], routing="uniform")
    assert learner_overlap(uniform, low=-3.0, high=3.0) is None
    with pytest.raises(ValueError, match="empty"):
        learner_overlap(learner([bank()], [bank()]), low=1.0, high=1.0)
