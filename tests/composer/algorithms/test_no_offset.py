"""The annealed learner without an offset (``algo.args.offset: false``): every closed-form fit is
``y ~ a f + b g`` (the chain: ``y ~ a h``), checked against one float64 least-squares solve per fit
with no column of ones; a learner without it routes tasks planted without an offset back exactly,
predicts no offset, and cannot absorb one that a learner with it fits."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from annealed_testing import random_batch

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.algorithms.annealed_sum_builder import annealed_sum_learner
from metacompose.algorithms.chain_fit import fit_single, single_fit_mse
from metacompose.algorithms.cross_fit import support_query_mse
from metacompose.algorithms.pair_fit import fit_pair_weighted, matched_fit_mse, pair_fit_mse
from metacompose.modules.warp_line import WarpLineBank
from metacompose.tasks.base import TaskBatch

RIDGE = 0.3  # large, so that a fit with the ridge on the wrong column would show


def _solve(columns: list[torch.Tensor], y: torch.Tensor, ridge: float = RIDGE) -> torch.Tensor:
    """Ridge least squares ``y ~ sum_k w_k columns_k`` (the ridge on every column: no offset
    column here), float64, as extra rows ``sqrt(ridge) e_k`` with target 0."""
    cols = torch.stack(columns, 1).double()
    pen = ridge**0.5 * torch.eye(len(columns), dtype=torch.float64)
    target = torch.cat([y.double(), torch.zeros(len(columns), dtype=torch.float64)])
    return torch.linalg.lstsq(torch.cat([cols, pen]), target[:, None]).solution[:, 0]


def test_pair_fits_without_an_offset_equal_one_least_squares_solve_per_pair():
    gen = torch.Generator().manual_seed(11)
    f, g = (torch.randn(n, 3, 8, generator=gen, dtype=torch.float64) + 2.0 for n in (2, 3))
    y = torch.randn(3, 8, generator=gen, dtype=torch.float64) - 1.5  # far from zero mean
    weight = torch.tensor([1, 0, 1, 1, 1, 0, 1, 1], dtype=torch.float64)
    keep = weight.bool()
    mse, amp = pair_fit_mse(f, g, y, weight=weight, ridge=RIDGE, amplitudes=True, offset=False)
    with_offset = pair_fit_mse(f, g, y, weight=weight, ridge=RIDGE)
    for i, j, t in itertools.product(range(2), range(3), range(3)):
        w = _solve([f[i, t, keep], g[j, t, keep]], y[t, keep])
        res = w[0] * f[i, t, keep] + w[1] * g[j, t, keep] - y[t, keep]
        assert float(mse[i, j, t]) == pytest.approx(float((res**2).mean()), rel=1e-9, abs=1e-12)
        assert float(amp[i, j, t]) == pytest.approx(float(w.abs().max()), rel=1e-9)
        assert with_offset[i, j, t] < mse[i, j, t]  # an offset always fits these better
    coef = fit_pair_weighted(f[1], g[2], y, weight=weight, ridge=RIDGE, offset=False)
    assert torch.equal(coef[:, 2], torch.zeros(3, dtype=torch.float64))
    for t in range(3):
        w = _solve([f[1, t, keep], g[2, t, keep]], y[t, keep])
        torch.testing.assert_close(coef[t, :2], w, rtol=1e-9, atol=1e-12)
    matched, matched_amp = matched_fit_mse(f[:, None], g[None], y, ridge=RIDGE, offset=False)
    whole, whole_amp = pair_fit_mse(f, g, y, ridge=RIDGE, amplitudes=True, offset=False)
    torch.testing.assert_close(matched, whole, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(matched_amp, whole_amp, rtol=1e-9, atol=1e-12)


def test_the_chains_fit_without_an_offset_is_one_amplitude():
    gen = torch.Generator().manual_seed(12)
    h = torch.randn(4, 3, 7, generator=gen, dtype=torch.float64) + 1.0
    y = torch.randn(3, 7, generator=gen, dtype=torch.float64) + 2.0
    mse, amp = single_fit_mse(h, y, ridge=RIDGE, offset=False)
    coef = fit_single(h[1], y, ridge=RIDGE, offset=False)
    for i, t in itertools.product(range(4), range(3)):
        (a,) = _solve([h[i, t]], y[t])
        assert float(mse[i, t]) == pytest.approx(float(((a * h[i, t] - y[t]) ** 2).mean()))
        assert float(amp[i, t]) == pytest.approx(abs(float(a)))
    for t in range(3):
        (a,) = _solve([h[1, t]], y[t])
        torch.testing.assert_close(coef[t], torch.stack([a, a * 0, a * 0]), rtol=1e-9, atol=0)


def test_the_cross_fit_without_an_offset_fits_on_support_and_scores_on_query():
    gen = torch.Generator().manual_seed(13)
    f, g = (torch.randn(2, 3, 9, generator=gen, dtype=torch.float64) + 1.0 for _ in range(2))
    y = torch.randn(3, 9, generator=gen, dtype=torch.float64) - 1.0
    support, query, amp = support_query_mse(f, g, y, support=5, ridge=RIDGE, offset=False)
    for i, j, t in itertools.product(range(2), range(2), range(3)):
        w = _solve([f[i, t, :5], g[j, t, :5]], y[t, :5])
        res = w[0] * f[i, t] + w[1] * g[j, t] - y[t]
        assert float(support[i, j, t]) == pytest.approx(float((res[:5] ** 2).mean()), rel=1e-8)
        assert float(query[i, j, t]) == pytest.approx(float((res[5:] ** 2).mean()), rel=1e-8)
        assert float(amp[i, j, t]) == pytest.approx(float(w.abs().max()), rel=1e-8)


def _learner(
    offset: bool, routing: str = "data", structure: str = "sum", shared: bool = False,
    refine: int = 2,
) -> AnnealedSumLearner:  # fmt: skip
    torch.manual_seed(4)
    kw = {"knots": 10, "span": 3.0, "contexts": 3, "spread": 1.0}
    f_bank = WarpLineBank(count=3 if shared else 2, **kw)
    g_kw = kw | {"span": 1.5} if structure == "chain" else kw  # g reads f's outputs
    g_bank = f_bank if shared else WarpLineBank(count=3, **g_kw)
    learner = AnnealedSumLearner(
        f_banks=[f_bank], g_banks=[g_bank], tau_start=1.0, tau_end=0.01, anneal_steps=10,
        eval_contexts=4, ridge=1e-6, routing=routing, structure=structure, refine=refine,
    ).double()  # fmt: skip
    learner.offset = offset
    return learner.eval()


def _curves(learner, x, f, g, cf, cg) -> torch.Tensor:
    """The columns a fit of candidates ``f``, ``g`` at contexts ``cf``, ``cg`` reads at ``x``
    ``(N,)``: ``[f, g]`` for the sum, ``[g(f)]`` for the chain (float64, detached)."""
    fb, gb = learner.f_banks[0], learner.g_banks[0]
    hf = fb.on_grid(x, cf.view(1))[f, 0]
    if learner.structure == "chain":
        return gb.on_grid(hf, cg.view(1))[g, 0].detach()[:, None]
    return torch.stack([hf, gb.on_grid(x, cg.view(1))[g, 0]], 1).detach()


def _brute_force(learner, x, y, pairs, grid) -> tuple[float, tuple]:
    """The lowest float64 least-squares MSE of ``y`` without an offset over ``pairs`` and every
    context pair of ``grid``: ``(mse, (f, g, cf, cg, amplitudes))``."""
    best = (float("inf"), None)
    for (f, g), cf, cg in itertools.product(pairs, grid, grid):
        cols = _curves(learner, x, f, g, cf, cg)
        w = _solve(list(cols.T), y, ridge=1e-6)
        mse = float(((cols @ w - y) ** 2).mean())
        best = min(best, (mse, (f, g, cf, cg, w)), key=lambda r: r[0])
    return best


@pytest.mark.parametrize(
    "kind", ["sum", "chain", "shared", "descriptor", "sum refined", "descriptor refined"]
)
def test_routing_without_an_offset_is_the_exhaustive_search_without_one(kind):
    """Grid routing (``refine=0``) is the exhaustive float64 search of ``y ~ a f + b g`` (the
    chain: ``y ~ a g(f)``) over the pairs it may choose; refined routing starts there and never
    fits the support points worse without an offset. A learner fitting an offset anywhere on the
    way would choose by another criterion (the targets are lifted by a constant, which only an
    offset could absorb)."""
    refine = 2 if "refined" in kind else 0
    routing = "descriptor" if "descriptor" in kind else "data"
    structure = "chain" if kind == "chain" else "sum"
    learner = _learner(False, routing, structure, shared=kind == "shared", refine=refine)
    batch = random_batch(4, 7, 3, seed=9)
    batch = TaskBatch(support_x=batch.support_x, support_y=batch.support_y + 1.5,
                      query_x=batch.query_x, query_y=batch.query_y)  # fmt: skip
    nf, ng = learner.graph.num_candidates["f"], learner.graph.num_candidates["g"]
    truth = (torch.tensor([0, 1, 1, 0]), torch.tensor([2, 0, 1, 1]))
    if routing == "descriptor":
        fast = learner._route(batch.support_x[..., 0], batch.support_y[..., 0], learner.eval_grid,
                              truth)  # fmt: skip
    else:
        fast, _ = learner.adapt(batch.support_x, batch.support_y)
    every = [(f, g) for f in range(nf) for g in range(ng) if kind != "shared" or f < g]
    for t in range(4):
        x, y = batch.support_x[t, :, 0], batch.support_y[t, :, 0]
        pairs = [(int(truth[0][t]), int(truth[1][t]))] if routing == "descriptor" else every
        mse, (f, g, cf, cg, w) = _brute_force(learner, x, y, pairs, learner.eval_grid)
        chosen = (int(fast["f"][t]), int(fast["g"][t]))
        cols = _curves(learner, x, *chosen, fast["cf"][t], fast["cg"][t])
        coef = fast["coef"][t].detach()
        assert float(coef[2]) == 0.0
        got = float(((cols @ coef[: cols.shape[1]] - y) ** 2).mean())
        if refine:
            assert got <= mse + 1e-9
        else:
            assert chosen == (f, g)
            assert float(fast["cf"][t]) == float(cf) and float(fast["cg"][t]) == float(cg)
            torch.testing.assert_close(coef[: len(w)], w, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("structure", ["sum", "chain"])
def test_the_annealed_objective_without_an_offset_is_bounded_by_the_hard_minimum(structure):
    """Meta-training's soft minimum lies within ``tau log n`` above the lowest fit without an
    offset over every pair and training context (brute force): fits with an offset would go below."""
    learner = _learner(False, structure=structure, refine=0).train()
    batch = random_batch(3, 6, 2, seed=10)
    batch = TaskBatch(support_x=batch.support_x, support_y=batch.support_y - 2.0,
                      query_x=batch.query_x, query_y=batch.query_y - 2.0)  # fmt: skip
    x = torch.cat([batch.support_x, batch.query_x], 1)[..., 0]
    y = torch.cat([batch.support_y, batch.query_y], 1)[..., 0]
    grid = learner.f_banks[0].grid(torch.float64)
    pairs = [(f, g) for f in range(2) for g in range(3)]
    hard = sum(_brute_force(learner, x[t], y[t], pairs, grid)[0] for t in range(3)) / 3
    obj = learner.meta_step(batch, step=10).objective.item()
    n = len(pairs) * len(grid) ** 2
    assert hard - 1e-9 <= obj <= hard + learner.tau(10) * math.log(n) + 1e-9


@pytest.mark.parametrize("constant", [0.0, 0.7])
def test_tasks_planted_without_an_offset_are_routed_back_and_an_offset_is_not_absorbed(constant):
    plain, with_offset = _learner(False), _learner(True)
    fb, gb, grid = plain.f_banks[0], plain.g_banks[0], plain.eval_grid
    truth_f, truth_g = torch.tensor([0, 1, 1, 0]), torch.tensor([2, 0, 1, 1])
    cf, cg = grid[torch.tensor([0, 3, 1, 2])], grid[torch.tensor([3, 3, 0, 1])]
    amp = torch.tensor([[1.5, -0.7], [-1.0, 2.0], [0.8, 0.8], [1.2, 0.5]], dtype=torch.float64)

    def planted(x):
        hf, hg = fb.chosen(x[..., 0], truth_f, cf), gb.chosen(x[..., 0], truth_g, cg)
        return (amp[:, :1] * hf + amp[:, 1:] * hg + constant).detach()[..., None]

    batch = random_batch(4, 14, 8, seed=7, y=planted)
    fast, _ = plain.adapt(batch.support_x, batch.support_y)
    assert torch.equal(fast["coef"][:, 2], torch.zeros(4, dtype=torch.float64))
    if constant == 0.0:
        assert torch.equal(fast["f"], truth_f) and torch.equal(fast["g"], truth_g)
        torch.testing.assert_close(fast["coef"][:, :2], amp, rtol=1e-4, atol=1e-4)
        assert plain.evaluate(batch).max() < 1e-8
    else:  # only the learner with the offset fits the constant
        assert with_offset.evaluate(batch).max() < 1e-8
        assert plain.evaluate(batch).min() > 1e-4


def test_descriptor_routing_without_an_offset_fits_only_a_and_b():
    learner = _learner(False, routing="descriptor")
    batch = random_batch(5, 10, 6, seed=8)
    pair = (torch.tensor([0, 1, 0, 1, 1]), torch.tensor([2, 2, 0, 1, 0]))
    fast = learner._route(batch.support_x[..., 0], batch.support_y[..., 0], learner.eval_grid, pair)
    assert torch.equal(fast["coef"][:, 2], torch.zeros(5, dtype=torch.float64))
    hf, hg = learner._terms(fast, batch.support_x[..., 0])
    for t in range(5):
        w = _solve([hf[t].detach(), hg[t].detach()], batch.support_y[t, :, 0], ridge=1e-6)
        torch.testing.assert_close(fast["coef"][t, :2].detach(), w, rtol=1e-7, atol=1e-9)


def test_the_builder_sets_the_offset_and_refuses_a_value_that_is_not_a_bool():
    from metacompose.models import mlp_graph

    args = {"encoder": mlp_graph(hidden=[2]), "targets": 1, "classification": False}
    assert annealed_sum_learner(**args).offset is True
    assert annealed_sum_learner(**args, offset=False).offset is False
    with pytest.raises(ValueError, match="offset='no': must be true or false"):
        annealed_sum_learner(**args, offset="no")
