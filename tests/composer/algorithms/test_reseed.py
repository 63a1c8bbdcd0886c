"""Re-seeding idle candidates against brute force: removal costs and carried errors recomputed by
plain loops in float64; a planted idle candidate becomes a perturbed copy of the merged one, and a
bank whose every candidate serves tasks of its own is left alone; no global random state is read;
the learner moves at the steps asked, only in training, and refuses what it cannot move."""

from __future__ import annotations

import pytest
import torch
from annealed_testing import random_batch

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.algorithms.annealed_sum_builder import annealed_sum_learner
from metacompose.algorithms.reseed import NOISE, TOLERANCE, candidate_scores, reseed
from metacompose.modules.warp_line import WarpLineBank


def _bank(count: int, seed: int) -> WarpLineBank:
    torch.manual_seed(seed)
    return WarpLineBank(count=count, knots=8, span=3.0, contexts=3, spread=1.0).double()


def _grid(best_pairs: torch.Tensor, contexts: int = 3) -> torch.Tensor:
    """``(C G, D G, T)`` whose best over each pair's contexts is ``best_pairs`` (the other
    context cells are worse by 1 to 2)."""
    c, d, t = best_pairs.shape
    g = torch.Generator().manual_seed(7)
    grid = best_pairs[:, None, :, None] + 1 + torch.rand(c, contexts, d, contexts, t, generator=g,
                                                         dtype=best_pairs.dtype)  # fmt: skip
    grid[:, 1, :, 2] = best_pairs  # the best cell of every pair
    return grid.flatten(2, 3).flatten(0, 1)


@pytest.mark.parametrize("shape", [(3, 4, 7), (2, 2, 5), (1, 3, 4), (4, 1, 6)])
def test_scores_are_the_brute_force_removal_costs_and_carried_errors(shape):
    c, d, t = shape
    m = torch.rand(shape, generator=torch.Generator().manual_seed(c * 10 + d), dtype=torch.float64)
    (cost_f, err_f), (cost_g, err_g) = candidate_scores(m)
    best = [min(float(m[i, j, k]) for i in range(c) for j in range(d)) for k in range(t)]
    for n, cost, err, axis in ((c, cost_f, err_f, 0), (d, cost_g, err_g, 1)):
        for q in range(n):
            if n == 1:
                assert cost[q] == float("inf")
            else:
                rest = [
                    min(float(m[i, j, k]) for i in range(c) for j in range(d)
                        if (i if axis == 0 else j) != q)
                    for k in range(t)
                ]  # fmt: skip
                want = sum(r - b for r, b in zip(rest, best)) / t
                assert float(cost[q]) == pytest.approx(want, rel=1e-12, abs=1e-15)
            owned = 0.0
            for k in range(t):
                i, j = divmod(int(torch.argmin(m[:, :, k].flatten())), d)
                owned += best[k] if (i if axis == 0 else j) == q else 0.0
            assert float(err[q]) == pytest.approx(owned / t, rel=1e-12, abs=1e-15)


def _planted(idle: bool) -> torch.Tensor:
    """Bank f (4 candidates) x bank g (1): 40 tasks. Candidate 0 serves two primitives' tasks
    with twice the error (a merge), 1 and 3 serve ten and five tasks only they fit; 2 fits five
    tasks of its own, or, with ``idle``, only tasks that 1 fits as well."""
    m = torch.full((4, 1, 40), 1.0, dtype=torch.float64)
    m[0, 0, :20] = 0.02
    m[1, 0, 20:30] = 0.01
    m[2, 0, 30:35] = 0.01
    m[3, 0, 35:40] = 0.01
    if idle:
        m[1, 0, 30:35] = 0.01
    return m


def test_an_idle_candidate_becomes_a_perturbed_copy_of_the_merged_one():
    f, g = _bank(4, 0), _bank(1, 1)
    before = {k: v.clone() for k, v in f.state_dict().items()}
    g_before = {k: v.clone() for k, v in g.state_dict().items()}
    state = torch.get_rng_state()
    best = _planted(idle=True)
    (cost, _), _ = candidate_scores(best)
    assert int(cost.argmin()) == 2 and float(cost[2]) == 0.0
    moves = reseed(f_bank=f, g_bank=g, grid_mse=_grid(best), replica=3, seed=11)
    assert torch.equal(torch.get_rng_state(), state)  # no global random state is read
    assert [(m.replica, m.slot, m.victim, m.source) for m in moves] == [(3, "f", 2, 0)]
    assert moves[0].fit == pytest.approx(float(best.amin((0, 1)).mean()), rel=1e-12)
    for k in (0, 1, 3):
        assert torch.equal(f.table[k], before["table"][k])
    noise = f.table[2].detach() - before["table"][0]
    assert 0 < float(noise.abs().max()) < 6 * NOISE * float(before["table"][0].std())
    assert torch.equal(f.slope[2].detach(), before["slope"][0])
    assert torch.equal(f.shift[2].detach(), before["shift"][0])
    assert all(torch.equal(g.state_dict()[k], v) for k, v in g_before.items())  # a lone candidate
    again = _bank(4, 0)
    reseed(f_bank=again, g_bank=_bank(1, 1), grid_mse=_grid(best), replica=3, seed=11)
    assert torch.equal(again.table, f.table)  # the seed fixes the perturbation


def test_a_bank_whose_candidates_all_serve_tasks_of_their_own_is_left_alone():
    f, g = _bank(4, 0), _bank(1, 1)
    best = _planted(idle=False)
    (cost, _), _ = candidate_scores(best)
    assert float(cost.min()) >= TOLERANCE * float(best.amin((0, 1)).mean())
    before = f.table.clone()
    assert reseed(f_bank=f, g_bank=g, grid_mse=_grid(best), replica=0, seed=0) == []
    assert torch.equal(f.table, before)


def _learner(reseed_steps=(), **kw) -> AnnealedSumLearner:
    torch.manual_seed(0)
    bank = {"knots": 10, "span": 3.0, "contexts": 3, "spread": 0.0}  # identical candidates: idle
    return AnnealedSumLearner(
        f_banks=[WarpLineBank(count=3, **bank) for _ in range(2)],
        g_banks=[WarpLineBank(count=2, **bank) for _ in range(2)],
        tau_start=1.0, tau_end=0.01, anneal_steps=10, eval_contexts=4, ridge=1e-6,
        reseed_steps=reseed_steps, **kw,
    ).double()  # fmt: skip


def test_the_learner_moves_at_the_steps_asked_and_only_in_training():
    batch = random_batch(16, 5, 5, seed=2)
    learner = _learner(reseed_steps=(3,))
    tables = [b.table.clone() for b in learner.f_banks]
    for step in (0, 1, 2, 4):
        learner.meta_step(batch, step=step)
    assert learner.moves == [] and all(
        torch.equal(b.table, t) for b, t in zip(learner.f_banks, tables)
    )
    learner.eval()
    learner.meta_step(batch, step=3)
    assert learner.moves == []
    learner.train()
    learner.meta_step(batch, step=3)  # identical candidates: removing one costs nothing
    assert {(m.replica, m.slot) for m in learner.moves} == {(0, "f"), (0, "g"), (1, "f"), (1, "g")}
    moved = [not torch.equal(b.table, t) for b, t in zip(learner.f_banks, tables)]
    assert moved == [True, True]


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"routing": "descriptor"}, "reseed with structure=sum, routing=descriptor"),
        ({"structure": "chain"}, "reseed with structure=chain"),
    ],
)
def test_the_learner_refuses_moves_it_cannot_make(kw, match):
    with pytest.raises(ValueError, match=match):
        _learner(reseed_steps=(2,), **kw)
    shared = [WarpLineBank(count=3, knots=10, span=3.0, contexts=3)]
    with pytest.raises(ValueError, match="a shared bank: idle candidates"):
        AnnealedSumLearner(f_banks=shared, g_banks=shared, tau_start=1.0, tau_end=0.01,
                           anneal_steps=10, eval_contexts=4, ridge=1e-6, reseed_steps=(2,))  # fmt: skip


def test_the_builder_turns_fractions_of_the_anneal_into_steps():
    from metacompose.models import mlp_graph

    args = {"encoder": mlp_graph(hidden=[2]), "targets": 1, "classification": False,
            "anneal_steps": 2400}  # fmt: skip
    learner = annealed_sum_learner(**args, reseed=[0.7, 0.6, 0.8, 0.6])
    assert learner.reseed_steps == {1440, 1680, 1920}
    for bad in ([0.0], [1.5], [-0.2]):
        with pytest.raises(
            ValueError, match=r"reseed=.*fractions of anneal_steps, each in \(0, 1\]"
        ):
            annealed_sum_learner(**args, reseed=bad)
