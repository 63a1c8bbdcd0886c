"""Split-and-merge moves against brute force: removal costs and carried errors recomputed by plain
loops in float64; a planted merge-and-split is undone by the move it picks; the replaced replicas
are exact copies of the best but for the one rearranged candidate; no global random state is read;
the learner makes its moves once, at the steps asked, and refuses them where they cannot apply."""

from __future__ import annotations

import pytest
import torch

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.algorithms.annealed_sum_builder import annealed_sum_learner
from metacompose.algorithms.split_merge import NOISE, candidate_scores, pick, split_merge
from metacompose.modules.warp_line import WarpLineBank
from metacompose.tasks.base import TaskBatch


def _banks(replicas: int, counts=(3, 4), seed: int = 0) -> dict[str, list[WarpLineBank]]:
    torch.manual_seed(seed)
    kw = {"knots": 8, "span": 3.0, "contexts": 3, "spread": 1.0}
    return {s: [WarpLineBank(count=n, **kw).double() for _ in range(replicas)]
            for s, n in zip("fg", counts)}  # fmt: skip


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
                assert float(cost[q]) == pytest.approx(
                    sum(r - b for r, b in zip(rest, best)) / t, rel=1e-12, abs=1e-15
                )
            owned = 0.0
            for k in range(t):
                i, j = divmod(int(torch.argmin(m[:, :, k].flatten())), d)
                owned += best[k] if (i if axis == 0 else j) == q else 0.0
            assert float(err[q]) == pytest.approx(owned / t, rel=1e-12, abs=1e-15)


def test_a_planted_merge_and_split_is_what_the_move_undoes():
    """Bank f: candidate 0 explains two primitives' tasks (merged, with twice the error), 1 and 2
    share a third (split: either alone explains them); 3 is a fourth primitive's own."""
    t = 40
    m = torch.full((4, 1, t), 1.0, dtype=torch.float64)
    m[0, 0, :20] = 0.05  # merged: 20 tasks of two primitives, fitted worse
    m[1, 0, 20:30] = m[2, 0, 20:30] = 0.01  # split: either fits the third primitive's tasks
    m[1, 0, 25:30] = 0.011
    m[3, 0, 30:] = 0.01
    (cost, err), _ = candidate_scores(m)
    assert pick(cost, err) == (1, 0)  # overwrite half of the split with a copy of the merged one


def test_pick_never_copies_the_victim_onto_itself_and_skips_a_lone_candidate():
    assert pick(torch.tensor([0.1, 0.5, 0.2]), torch.tensor([9.0, 1.0, 2.0])) == (0, 2)
    assert pick(torch.tensor([float("inf")]), torch.tensor([1.0])) is None


@pytest.mark.parametrize("replicas, moved", [(2, 1), (3, 2), (4, 2)])
def test_the_worst_replicas_become_rearranged_copies_of_the_best(replicas, moved):
    banks = _banks(replicas)
    fit = torch.linspace(0.3, 0.1, replicas, dtype=torch.float64)  # the last is the best
    amplitude = torch.arange(1.0, replicas + 1, dtype=torch.float64)
    before = {s: [b.state_dict() for b in bs] for s, bs in banks.items()}
    before = {s: [{k: v.clone() for k, v in sd.items()} for sd in bs] for s, bs in before.items()}
    scored = []

    def best_pairs(r):
        scored.append(r)
        return torch.rand(3, 4, 10, generator=torch.Generator().manual_seed(r), dtype=torch.float64)

    state = torch.get_rng_state()
    moves = split_merge(banks=banks, fit=fit, amplitude=amplitude, best_pairs=best_pairs, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the perturbation has its own generator
    best = replicas - 1
    assert scored == [best] and len(moves) == moved
    assert [m.replaced for m in moves] == list(range(moved))  # the highest fits, worst first
    assert {m.slot for m in moves} == ({"f", "g"} if moved == 2 else {moves[0].slot})
    for mv in moves:
        assert mv.copied == best and mv.victim != mv.source
        assert fit[mv.replaced] == fit[best] and amplitude[mv.replaced] == amplitude[best]
        for s in "fg":
            got, src = banks[s][mv.replaced].state_dict(), before[s][best]
            for key in src:
                if s != mv.slot:
                    assert torch.equal(got[key], src[key]), (s, key)
                    continue
                rows = [k for k in range(len(src[key])) if k != mv.victim]
                assert torch.equal(got[key][rows], src[key][rows]), key
            if s == mv.slot:
                table = src["table"][mv.source]
                step = got["table"][mv.victim] - table
                assert 0 < step.abs().max() <= 6 * NOISE * table.std()
                assert torch.equal(got["slope"][mv.victim], src["slope"][mv.source])
                assert torch.equal(got["shift"][mv.victim], src["shift"][mv.source])
    for r in range(moved, best + 1):  # the rest untouched
        for s in "fg":
            for key, v in banks[s][r].state_dict().items():
                assert torch.equal(v, before[s][r][key])


def test_with_two_replicas_the_move_is_in_the_bank_with_the_cheapest_removal():
    banks = _banks(2)
    m = torch.rand(3, 4, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (cost_f, _), (cost_g, _) = candidate_scores(m)
    fit, amp = torch.tensor([0.2, 0.1]), torch.ones(2)
    (move,) = split_merge(banks=banks, fit=fit, amplitude=amp, best_pairs=lambda r: m, seed=0)
    assert move.slot == ("f" if cost_f.min() <= cost_g.min() else "g")


def test_no_move_before_any_fit_and_the_same_seed_moves_alike():
    for fit in (torch.full((3,), float("nan")),):
        assert split_merge(banks=_banks(3), fit=fit, amplitude=torch.ones(3),
                           best_pairs=lambda r: torch.rand(3, 4, 5), seed=0) == []  # fmt: skip
    a, b = _banks(3, seed=1), _banks(3, seed=1)
    m = torch.rand(3, 4, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for banks in (a, b):
        split_merge(banks=banks, fit=torch.tensor([0.3, 0.1, 0.2]), amplitude=torch.ones(3),
                    best_pairs=lambda r: m, seed=7)  # fmt: skip
    for s in "fg":
        for x, y in zip(a[s], b[s]):
            assert all(torch.equal(v, y.state_dict()[k]) for k, v in x.state_dict().items())


def _learner(**kw) -> AnnealedSumLearner:
    banks = _banks(3, counts=(2, 3))
    args = {"tau_start": 1.0, "tau_end": 0.01, "anneal_steps": 10, "eval_contexts": 4,
            "ridge": 1e-6}  # fmt: skip
    return AnnealedSumLearner(f_banks=banks["f"], g_banks=banks["g"], **args | kw).double()


def _batch(t: int = 6, n: int = 8) -> TaskBatch:
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(t, n, 1, generator=g, dtype=torch.float64) - 0.5) * 6
    y = torch.randn(t, n, 1, generator=g, dtype=torch.float64)
    return TaskBatch(support_x=x[:, :5], support_y=y[:, :5], query_x=x[:, 5:], query_y=y[:, 5:])


def test_the_learner_moves_once_at_each_step_asked_and_only_while_training():
    learner = _learner(split_merge_steps=(2, 4)).train()
    batch = _batch()
    for step in range(6):
        learner.meta_step(batch, step=step)
        if step == 2:
            learner.meta_step(batch, step=2)  # recomputed (the guard): no second move
    assert len(learner.moves) == 4  # two copies (f and g) at steps 2 and 4
    learner.eval()
    learner.meta_step(batch, step=4)
    assert len(learner.moves) == 4


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"split_merge": [0.0]}, r"split_merge=\[0.0\]: fractions of anneal_steps in \(0, 1\]"),
        ({"split_merge": [1.5]}, r"split_merge=\[1.5\]"),
        ({"split_merge": [0.5], "replicas": 1}, "two replicas or more"),
        ({"split_merge": [0.5], "routing": "uniform"}, "routing: data"),
    ],
)
def test_the_builder_refuses_moves_that_cannot_apply(kw, match):
    from metacompose.models import mlp_graph

    args = {"encoder": mlp_graph(hidden=[2]), "targets": 1, "classification": False} | kw
    with pytest.raises(ValueError, match=match):
        annealed_sum_learner(**args)


def test_the_builder_turns_fractions_into_steps_of_the_annealing():
    from metacompose.models import mlp_graph

    learner = annealed_sum_learner(encoder=mlp_graph(hidden=[2]), targets=1, classification=False,
                                   anneal_steps=2400, split_merge=[0.5, 0.65, 0.8],
                                   knots=8, candidates=[2, 2])  # fmt: skip
    assert learner.split_merge_steps == {1200, 1560, 1920}
