"""Sub-grid context refinement of the annealed sum learner: a refined fit is never worse than its
grid start, a context planted between grid points is found (a dense float64 search is the
reference), routing with refinement never fits the support set worse, and the options it does
not serve are refused."""

from __future__ import annotations

import math

import pytest
import torch

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.algorithms.context_refine import best_on_grid, refine_contexts
from metacompose.algorithms.pair_fit import matched_fit_mse, pair_fit_mse
from metacompose.modules.warp_line import WarpLineBank
from metacompose.tasks.base import TaskBatch


def _learner(refine: int, *, seed: int = 0, routing: str = "data", structure: str = "sum"):
    torch.manual_seed(seed)
    kw = {"knots": 24, "span": 3.0, "contexts": 5, "spread": 1.0}
    return AnnealedSumLearner(
        f_banks=[WarpLineBank(count=2, **kw)],
        g_banks=[WarpLineBank(count=3, **kw)],
        tau_start=1.0,
        tau_end=0.01,
        anneal_steps=10,
        eval_contexts=5,
        ridge=1e-6,
        routing=routing,
        structure=structure,
        refine=refine,
    ).double()


def _batch(t: int, k: int, q: int, seed: int, y=None) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(t, k + q, 1, generator=g, dtype=torch.float64) - 0.5) * 6
    y = torch.randn(t, k + q, 1, generator=g, dtype=torch.float64) if y is None else y(x)
    return TaskBatch(support_x=x[:, :k], support_y=y[:, :k], query_x=x[:, k:], query_y=y[:, k:])


def _support_mse(learner, batch) -> torch.Tensor:
    fast, _ = learner.adapt(batch.support_x, batch.support_y)
    return learner.query_loss(fast, {}, batch.support_x, batch.support_y)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_refined_fit_is_never_worse_than_each_pairs_best_on_the_grid(seed):
    learner = _learner(3, seed=seed)
    batch = _batch(6, 10, 0, seed=seed + 10)
    x, y = batch.support_x[..., 0], batch.support_y[..., 0]
    grid = learner.eval_grid
    with torch.no_grad():
        mse, _ = learner._pair_mse(0, x, y, grid)  # (C G, D G, T)
        start = mse.view(2, 5, 3, 5, 6).amin((1, 3))  # (C, D, T): each pair's best on the grid
        fine, _, cf, cg = learner._refined(0, x, y, mse, grid)
    assert (fine <= start + 1e-12).all()
    assert (fine < start - 1e-6).float().mean() > 0.5  # it does move most of them
    assert cf.abs().max() <= 1 and cg.abs().max() <= 1
    # the contexts it returns are the ones its fit is of (an independent re-read)
    hf = torch.stack(
        [
            learner.f_banks[0].chosen(x, torch.full((6,), i), cf[i, j])
            for i in range(2)
            for j in range(3)
        ]
    )
    hg = torch.stack(
        [
            learner.g_banks[0].chosen(x, torch.full((6,), j), cg[i, j])
            for i in range(2)
            for j in range(3)
        ]
    )
    again, _ = matched_fit_mse(hf, hg, y, ridge=1e-6)
    torch.testing.assert_close(fine.flatten(0, 1), again, rtol=1e-10, atol=1e-12)


def test_best_on_grid_is_each_pairs_argmin():
    grid = torch.linspace(-1, 1, 4, dtype=torch.float64)
    mse = torch.rand(
        2 * 4, 3 * 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    cf, cg = best_on_grid(mse, grid)
    for i in range(2):
        for j in range(3):
            for t in range(5):
                block = mse.view(2, 4, 3, 4, 5)[i, :, j, :, t]
                a, b = divmod(int(block.argmin()), 4)
                assert (cf[i, j, t], cg[i, j, t]) == (grid[a], grid[b])


def test_a_saw_phase_between_grid_points_is_found():
    """A sawtooth candidate (period 2) whose phase is the context: the grid's nearest phase misses
    by up to half a grid step, a discontinuous shape's worst case; 3 rounds find it."""
    torch.manual_seed(0)
    bank = WarpLineBank(count=1, knots=601, span=4.0, contexts=15).double()
    other = WarpLineBank(count=1, knots=601, span=4.0, contexts=15).double()
    u = torch.linspace(-4.0, 4.0, 601, dtype=torch.float64)
    with torch.no_grad():
        bank.table.copy_((2 * torch.remainder(u / 2, 1.0) - 1)[None])
        bank.slope.zero_()
        bank.shift.fill_(1.0)  # u = x + c: the context is the phase
        other.table.copy_(torch.exp(-(u**2))[None])
        other.slope.zero_()
        other.shift.fill_(1.0)
    gen = torch.Generator().manual_seed(3)
    t, n = 40, 60
    x = (torch.rand(t, n, generator=gen, dtype=torch.float64) - 0.5) * 5
    truth_f = torch.rand(t, generator=gen, dtype=torch.float64) * 1.8 - 0.9
    truth_g = torch.rand(t, generator=gen, dtype=torch.float64) * 1.8 - 0.9
    zero = torch.zeros(t, dtype=torch.long)
    y = 1.3 * bank.chosen(x, zero, truth_f) - 0.6 * other.chosen(x, zero, truth_g) + 0.2
    y = y.detach()
    grid = torch.linspace(-1, 1, 15, dtype=torch.float64)

    def read(cf, cg):
        xs = x.view(t, *[1] * (cf.dim() - 3), n)
        return bank.read_at(xs, cf), other.read_at(xs, cg)

    with torch.no_grad():
        mse = pair_fit_mse(
            bank.on_grid(x, grid).flatten(0, 1), other.on_grid(x, grid).flatten(0, 1), y, ridge=1e-9
        )
        cf0, cg0 = best_on_grid(mse, grid)
        cf, cg = refine_contexts(read, y, cf0, cg0, step=2 / 14, rounds=3, ridge=1e-9)
        grid_mse = matched_fit_mse(*read(cf0, cg0), y, ridge=1e-9)[0]
        fine_mse = matched_fit_mse(*read(cf, cg), y, ridge=1e-9)[0]
        # the reference: a dense float64 search over f's phase at the true g context
        dense = torch.linspace(-1, 1, 20001, dtype=torch.float64)
        ref = torch.stack([matched_fit_mse(bank.read_at(x[i : i + 1], dense[None, :, None])[0, :, 0],
                                           other.read_at(x[i : i + 1], truth_g[i].view(1, 1))[0],
                                           y[i], ridge=1e-9)[0].min() for i in range(t)])  # fmt: skip
    assert grid_mse.mean() > 0.05  # the grid alone misses (measured 0.075)
    assert (fine_mse <= grid_mse + 1e-12).all()
    assert fine_mse.mean() < grid_mse.mean() / 20  # measured 0.0023: 32x lower
    # a local search: most tasks reach the dense optimum, a few stop in a coupled local minimum
    found = (fine_mse[0, 0] <= ref + 1e-4) & ((cf[0, 0] - truth_f).abs() < 0.03)
    assert found.float().mean() >= 0.45  # measured 21 of 40


@pytest.mark.parametrize("routing", ["data", "uniform"])
def test_routing_with_refinement_never_fits_the_support_set_worse(routing):
    batch = _batch(20, 8, 5, seed=4)
    plain, refined = _learner(0, seed=6, routing=routing), _learner(2, seed=6, routing=routing)
    with torch.no_grad():
        gap = _support_mse(refined.eval(), batch) - _support_mse(plain.eval(), batch)
    assert (gap <= 1e-10).all() and (gap < -1e-6).any()


def test_training_with_refinement_adds_each_pairs_refined_fit_to_the_soft_minimum():
    learner = _learner(2, seed=3)
    batch = _batch(4, 6, 4, seed=7)
    x = torch.cat([batch.support_x, batch.query_x], 1)[..., 0]
    y = torch.cat([batch.support_y, batch.query_y], 1)[..., 0]
    grid = learner.f_banks[0].grid(torch.float64)
    with torch.no_grad():
        mse, _ = learner._pair_mse(0, x, y, None)
        fine = learner._refined(0, x, y, mse, grid)[0]
    pool = torch.cat([mse.flatten(0, 1).T, fine.flatten(0, 1).T], 1)  # (T, 150 + 6)
    tau = learner.tau(5)
    want = (-tau * torch.logsumexp(-pool / tau, 1) + tau * math.log(pool.shape[1])).mean()
    step = learner.meta_step(batch, step=5)
    torch.testing.assert_close(step.objective, want, rtol=1e-12, atol=1e-12)
    step.objective.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in learner.parameters())


def test_refinement_is_refused_where_it_does_not_apply():
    with pytest.raises(ValueError, match="structure=sum"):
        _learner(2, structure="chain")
    with pytest.raises(ValueError, match="refine=-1"):
        _learner(-1)
    with pytest.raises(ValueError, match="points=4"):
        refine_contexts(None, torch.zeros(1, 2), torch.zeros(1, 1, 1), torch.zeros(1, 1, 1),
                        step=0.1, rounds=1, ridge=1e-6, points=4)  # fmt: skip
