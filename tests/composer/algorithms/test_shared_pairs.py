"""One shared bank for both terms of the sum: routing is the exhaustive float64 least-squares
search over the unordered pairs of distinct candidates; the refined pairs are the two-bank
refinement's (the same bank read as both banks) on ``i < j`` and nothing else; planted tasks come
back as their unordered pair; the objective pools only those pairs; the builder, the stored
structure and set purity know the bank is one."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from annealed_testing import random_batch

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.algorithms.annealed_sum_builder import annealed_sum_learner
from metacompose.algorithms.pair_fit import pair_fit_mse
from metacompose.algorithms.shared_pairs import refine_upper_pairs, upper_pair_fit
from metacompose.algorithms.sum_banks import SumBanks
from metacompose.models import mlp_graph
from metacompose.modules.warp_line import WarpLineBank
from metacompose.router.metrics import set_purity

C = 4


def _bank(seed: int, count: int = C) -> WarpLineBank:
    torch.manual_seed(seed)
    return WarpLineBank(count=count, knots=12, span=3.0, contexts=3, spread=1.0).double()


def _learner(seed: int = 0, *, refine: int = 0, replicas: int = 1):
    banks = [_bank(seed + r) for r in range(replicas)]
    return AnnealedSumLearner(
        f_banks=banks, g_banks=banks, tau_start=1.0, tau_end=0.01, anneal_steps=10,
        eval_contexts=4, ridge=1e-6, refine=refine,
    ).double()  # fmt: skip


def test_the_upper_pairs_are_the_full_fits_on_distinct_candidates_i_below_j_and_nothing_else():
    """Reference: every ordered pair fitted at once (pair_fit_mse over all rows and columns),
    values and gradients; any other row and column is inf (never a fit, never admissible)."""
    g, t, n = 3, 5, 7
    gen = torch.Generator().manual_seed(4)
    h = torch.randn(C, g, t, n, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(t, n, generator=gen, dtype=torch.float64)
    mse, amp = upper_pair_fit(h, y, ridge=1e-6)
    rows = h.flatten(0, 1)
    full, full_amp = pair_fit_mse(rows, rows, y, ridge=1e-6, amplitudes=True)
    upper = torch.zeros(C * g, C * g, dtype=torch.bool)
    for row, col in itertools.product(range(C * g), repeat=2):
        upper[row, col] = row // g < col // g
    torch.testing.assert_close(mse[upper], full[upper], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(amp[upper], full_amp[upper], rtol=1e-12, atol=1e-14)
    assert torch.isinf(mse[~upper]).all() and torch.isinf(amp[~upper]).all()
    (grad,) = torch.autograd.grad(mse[upper].sum(), h)
    (want,) = torch.autograd.grad(full[upper].sum(), h)
    torch.testing.assert_close(grad, want, rtol=1e-10, atol=1e-12)


def test_routing_is_the_exhaustive_search_over_unordered_pairs():
    learner = _learner().eval()
    batch = random_batch(6, 7, 3)
    fast, _ = learner.adapt(batch.support_x, batch.support_y)
    grid, bank = learner.eval_grid, learner.f_banks[0]
    sx, sy = batch.support_x[..., 0], batch.support_y[..., 0]
    for t in range(6):
        best = (math.inf, None)
        for i, j in itertools.combinations(range(C), 2):
            for a, b in itertools.product(range(4), range(4)):
                hf = bank.on_grid(sx[t], grid[a : a + 1])[i, 0]
                hg = bank.on_grid(sx[t], grid[b : b + 1])[j, 0]
                cols = torch.stack([hf, hg, torch.ones_like(hf)], 1).detach()
                pen = torch.tensor([[1e-3, 0, 0], [0, 1e-3, 0]], dtype=torch.float64)
                target = torch.cat([sy[t], torch.zeros(2, dtype=torch.float64)])
                w = torch.linalg.lstsq(torch.cat([cols, pen]), target[:, None]).solution[:, 0]
                mse = float(((cols @ w - sy[t]) ** 2).mean())
                best = min(best, (mse, (i, j, a, b, w)), key=lambda r: r[0])
        i, j, a, b, w = best[1]
        assert (int(fast["f"][t]), int(fast["g"][t])) == (i, j)
        assert float(fast["cf"][t]) == float(grid[a]) and float(fast["cg"][t]) == float(grid[b])
        torch.testing.assert_close(fast["coef"][t], w, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_refining_the_upper_pairs_is_the_two_bank_refinement_on_those_pairs(seed):
    """Reference: the two-bank learner (the same bank as f and g, every ordered pair)."""
    bank = _bank(seed)
    two = AnnealedSumLearner(f_banks=[bank], g_banks=[bank], tau_start=1.0, tau_end=0.01,
                             anneal_steps=10, eval_contexts=5, ridge=1e-6, refine=2).double()  # fmt: skip
    batch = random_batch(5, 9, 0, seed=seed + 3)
    x, y = batch.support_x[..., 0], batch.support_y[..., 0]
    grid = two.eval_grid
    with torch.no_grad():
        mse, _ = two._pair_mse(0, x, y, grid)
        want = two._refined(0, x, y, mse, grid)
        got = refine_upper_pairs(bank, x, y, mse, grid, rounds=2, ridge=1e-6)
    i, j = torch.triu_indices(C, C, 1)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g[i, j], w[i, j], rtol=0, atol=0)
    lower = ~torch.ones(C, C, dtype=torch.bool).triu(1)
    assert torch.isinf(got[0][lower]).all()


def test_planted_tasks_come_back_as_their_unordered_pair():
    learner = _learner(seed=4).eval()
    bank, grid = learner.f_banks[0], learner.eval_grid
    first, second = torch.tensor([0, 1, 3, 2, 0, 1]), torch.tensor([2, 3, 0, 1, 3, 2])
    cf, cg = grid[torch.tensor([0, 3, 1, 2, 2, 0])], grid[torch.tensor([3, 3, 0, 1, 2, 1])]
    amp = torch.tensor([[1.5, -0.7, 0.2], [-1.0, 2.0, 0.0], [0.8, 0.8, -1.0]] * 2).double()

    def planted(x):
        h1, h2 = bank.chosen(x[..., 0], first, cf), bank.chosen(x[..., 0], second, cg)
        return (amp[:, :1] * h1 + amp[:, 1:2] * h2 + amp[:, 2:]).detach()[..., None]

    batch = random_batch(6, 12, 8, seed=5, y=planted)
    choice = learner.choices(batch)
    assert torch.equal(choice["f"], torch.minimum(first, second))
    assert torch.equal(choice["g"], torch.maximum(first, second))
    assert learner.evaluate(batch).max() < 1e-8


def test_the_objective_pools_only_the_unordered_pairs():
    learner = _learner(seed=6, refine=1)
    batch = random_batch(4, 6, 4, seed=7)
    x = torch.cat([batch.support_x, batch.query_x], 1)[..., 0]
    y = torch.cat([batch.support_y, batch.query_y], 1)[..., 0]
    bank, grid = learner.f_banks[0], learner.f_banks[0].grid(torch.float64)
    with torch.no_grad():
        h = bank.on_grid(x, grid).flatten(0, 1)
        from metacompose.algorithms.pair_fit import pair_fit_mse

        full = pair_fit_mse(h, h, y, ridge=1e-6)  # every ordered pair, (C G, C G, T)
        fine = refine_upper_pairs(bank, x, y, full, grid, rounds=1, ridge=1e-6)[0]
    g = len(grid)
    rows = [full[i * g : (i + 1) * g, j * g : (j + 1) * g].flatten(0, 1)
            for i, j in itertools.combinations(range(C), 2)]  # fmt: skip
    i, j = torch.triu_indices(C, C, 1)
    pool = torch.cat([torch.cat(rows).T, fine[i, j].T], 1)  # (T, 6 * 9 + 6): finite ones only
    tau = learner.tau(3)
    want = (-tau * torch.logsumexp(-pool / tau, 1)).mean()
    n_all = (C * g) ** 2 + C * C  # the learner's pool counts the masked entries too
    step = learner.meta_step(batch, step=3)
    torch.testing.assert_close(step.objective, want + tau * math.log(n_all), rtol=1e-12, atol=1e-12)
    step.objective.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in learner.parameters())


def test_the_builder_makes_one_bank_per_replica_and_the_structure_says_so():
    enc = mlp_graph(hidden=[2])
    learner = annealed_sum_learner(encoder=enc, targets=1, classification=False,
                                   candidates=[5], replicas=2, contexts=3)  # fmt: skip
    assert learner.shared and all(f is g for f, g in zip(learner.f_banks, learner.g_banks))
    assert learner.graph.num_candidates == {"f": 5, "g": 5}
    data = learner.graph.to_json_dict()
    assert data["shared"] is True and SumBanks.from_json_dict(data).shared
    two = annealed_sum_learner(encoder=enc, targets=1, classification=False, contexts=3)
    assert not two.shared and "shared" not in two.graph.to_json_dict()  # as stored before
    assert sum(p.numel() for p in learner.parameters()) == 2 * 5 * (96 + 2)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"routing": "descriptor"}, "one shared bank serves the sum routed from data"),
        ({"routing": "uniform"}, "one shared bank serves the sum routed from data"),
        ({"structure": "chain"}, "one shared bank serves the sum routed from data"),
        ({"candidates": [1]}, "needs >= 2 candidates"),
        ({"candidates": [4, 4, 4]}, r"or \[n\]: one bank"),
    ],
)
def test_what_one_shared_bank_cannot_do_is_refused(kw, match):
    enc = mlp_graph(hidden=[2])
    args = {"candidates": [4]} | kw
    with pytest.raises(ValueError, match=match):
        annealed_sum_learner(encoder=enc, targets=1, classification=False, contexts=3, **args)


def test_a_bank_shared_by_some_replicas_only_is_refused():
    one, f, g = _bank(0), _bank(1), _bank(2)
    with pytest.raises(ValueError, match="every replica's f-bank and g-bank must be one bank"):
        AnnealedSumLearner(f_banks=[one, f], g_banks=[one, g], tau_start=1.0, tau_end=0.01,
                           anneal_steps=10, eval_contexts=4, ridge=1e-6)  # fmt: skip


def test_set_purity_of_a_shared_bank_matches_each_candidate_once():
    """Brute force: the best one-to-one map of 4 candidates to the 4 values of both factors."""
    factors = {"f": ("a", "b"), "g": ("p", "q")}
    gen = torch.Generator().manual_seed(0)
    tf = torch.randint(2, (60,), generator=gen).tolist()
    tg = torch.randint(2, (60,), generator=gen).tolist()
    owner = [2, 0, 3, 1]  # value (f=a, f=b, g=p, g=q) -> candidate
    pairs = [sorted((owner[a], owner[2 + b])) for a, b in zip(tf, tg)]
    for t in (5, 17, 33):  # three tasks routed to a wrong pair
        pairs[t] = (
            sorted(((pairs[t][0] + 1) % 4, pairs[t][1]))
            if pairs[t][0] + 1 != pairs[t][1]
            else [0, 1]
        )
    choices = {"f": [p[0] for p in pairs], "g": [p[1] for p in pairs]}
    out = set_purity(choices, {"f": tf, "g": tg}, factors, {"f": 4, "g": 4}, shared=True)
    best = 0.0
    for perm in itertools.permutations(range(4)):  # candidate -> value index
        right = sum({perm[p[0]], perm[p[1]]} == {a, 2 + b} for p, a, b in zip(pairs, tf, tg))
        best = max(best, right / 60)
    assert out["joint_accuracy"] == pytest.approx(best) and best >= 57 / 60
    assert set(out["matching"]) == {"bank[0]", "bank[1]", "bank[2]", "bank[3]"}
    assert out["matching"]["bank[2]"] == "f=a" and out["matching"]["bank[1]"] == "g=q"
