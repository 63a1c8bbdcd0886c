"""The annealed learner on the chain ``y = a g(f(x)) + c``: every composition's closed-form fit,
routing, descriptor routing and uniform routing, against float64 least-squares searches written
out by hand (its exported graphs: test_annealed_sum.py, with the sum's)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from annealed_testing import random_batch
from omegaconf import OmegaConf

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.algorithms.annealed_sum_builder import annealed_sum_learner
from metacompose.algorithms.chain_fit import fit_single, single_fit_mse
from metacompose.models import mlp_graph
from metacompose.modules.warp_line import WarpLineBank

PEN = torch.tensor([[1e-3, 0.0]], dtype=torch.float64)  # ridge 1e-6 on the amplitude only


def _learner(seed: int = 0, routing: str = "data", counts=(2, 3)) -> AnnealedSumLearner:
    torch.manual_seed(seed)
    f_kw = {"knots": 10, "span": 3.0, "contexts": 3, "spread": 1.0}
    g_kw = f_kw | {"span": 1.5}  # g reads f's outputs (tables of about +-1)
    f_bank = WarpLineBank(count=counts[0], **f_kw)
    with torch.no_grad():  # f's outputs cover g's whole table, where g's knots bend it
        f_bank.table.mul_(4.0)
    return AnnealedSumLearner(
        f_banks=[f_bank],
        g_banks=[WarpLineBank(count=counts[1], **g_kw)],
        tau_start=1.0, tau_end=0.01, anneal_steps=10, eval_contexts=4, ridge=1e-6,
        routing=routing, structure="chain",
    ).double()  # fmt: skip


def _lstsq(h: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """``y ~ a h + c`` with the ridge on ``a``: (MSE, (a, c))."""
    cols = torch.stack([h, torch.ones_like(h)], 1).detach()
    target = torch.cat([y, torch.zeros(1, dtype=torch.float64)])
    w = torch.linalg.lstsq(torch.cat([cols, PEN]), target[:, None]).solution[:, 0]
    return float(((cols @ w - y) ** 2).mean()), w


def test_single_fit_is_least_squares_with_an_offset():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(4, 3, 7, generator=g, dtype=torch.float64)
    y = torch.randn(3, 7, generator=g, dtype=torch.float64)
    mse, amp = single_fit_mse(h, y, ridge=1e-6)
    coef = fit_single(h[2], y, ridge=1e-6)
    for i, t in itertools.product(range(4), range(3)):
        want, w = _lstsq(h[i, t], y[t])
        assert float(mse[i, t]) == pytest.approx(want, rel=1e-9, abs=1e-12)
        assert float(amp[i, t]) == pytest.approx(abs(float(w[0])), rel=1e-9)
        if i == 2:
            torch.testing.assert_close(coef[t], torch.stack([w[0], w.new_zeros(()), w[1]]))


def test_routing_is_the_exhaustive_search_over_compositions_and_contexts():
    learner = _learner().eval()
    batch = random_batch(5, 6, 4)
    fast, _ = learner.adapt(batch.support_x, batch.support_y)
    pred = learner.predict(fast, batch.query_x)[..., 0]
    grid, fb, gb = learner.eval_grid, learner.f_banks[0], learner.g_banks[0]
    sx, sy, qx = batch.support_x[..., 0], batch.support_y[..., 0], batch.query_x[..., 0]
    for t in range(5):
        best = (math.inf, None)
        for i, j, a, b in itertools.product(range(2), range(3), range(4), range(4)):
            x = torch.cat([sx[t], qx[t]])
            u = fb.on_grid(x, grid[a : a + 1])[i, 0]
            h = gb.on_grid(u, grid[b : b + 1])[j, 0]
            mse, w = _lstsq(h[:6], sy[t])
            best = min(best, (mse, (i, j, a, b, w, w[0] * h[6:] + w[1])), key=lambda r: r[0])
        i, j, a, b, w, want = best[1]
        assert (int(fast["f"][t]), int(fast["g"][t])) == (i, j)
        assert float(fast["cf"][t]) == float(grid[a]) and float(fast["cg"][t]) == float(grid[b])
        torch.testing.assert_close(fast["coef"][t, [0, 2]], w, rtol=1e-7, atol=1e-9)
        assert float(fast["coef"][t, 1]) == 0.0
        torch.testing.assert_close(pred[t], want.detach(), rtol=1e-7, atol=1e-9)


def test_compositions_planted_from_the_banks_are_routed_back():
    learner = _learner(seed=2).eval()
    fb, gb, grid = learner.f_banks[0], learner.g_banks[0], learner.eval_grid
    f, g = torch.tensor([0, 1, 1, 0, 1, 0]), torch.tensor([2, 0, 1, 1, 2, 0])
    cf, cg = grid[torch.tensor([0, 3, 1, 2, 2, 0])], grid[torch.tensor([3, 3, 0, 1, 2, 1])]
    a, c = torch.tensor([1.5, -0.7, 0.9, -1.2, 2.0, 0.6]).double(), 0.3

    def planted(x):
        h = gb.chosen(fb.chosen(x[..., 0], f, cf), g, cg)
        return (a[:, None] * h + c).detach()[..., None]

    batch = random_batch(6, 12, 8, seed=5, y=planted)
    assert learner.evaluate(batch).max() < 1e-8
    choice = learner.choices(batch)
    assert torch.equal(choice["f"], f) and torch.equal(choice["g"], g)


def test_descriptor_routing_searches_only_the_true_compositions_contexts():
    learner = _learner(seed=10).eval()
    learner.eval_routing = "descriptor"
    f, g = torch.tensor([0, 1, 1, 0, 1]), torch.tensor([2, 0, 1, 1, 2])
    batch = random_batch(5, 6, 4, seed=6)
    batch.descriptor = torch.cat([torch.eye(2)[f], torch.eye(3)[g]], 1).double()
    fast = learner._eval_route(batch)
    grid, fb, gb = learner.eval_grid, learner.f_banks[0], learner.g_banks[0]
    sx, sy = batch.support_x[..., 0], batch.support_y[..., 0]
    for t in range(5):
        fits = [
            (_lstsq(gb.on_grid(fb.on_grid(sx[t], grid[a : a + 1])[f[t], 0], grid[b : b + 1])[g[t], 0], sy[t])[0], a, b)
            for a, b in itertools.product(range(4), range(4))
        ]  # fmt: skip
        _, a, b = min(fits)
        assert (int(fast["f"][t]), int(fast["g"][t])) == (int(f[t]), int(g[t]))
        assert float(fast["cf"][t]) == float(grid[a]) and float(fast["cg"][t]) == float(grid[b])


def test_uniform_chain_is_each_slots_mean_candidate_composed():
    learner = _learner(seed=5, routing="uniform").eval()
    batch = random_batch(4, 6, 5, seed=3)
    fast, _ = learner.adapt(batch.support_x, batch.support_y)
    grid, fb, gb = learner.eval_grid, learner.f_banks[0], learner.g_banks[0]
    sx, sy = batch.support_x[..., 0], batch.support_y[..., 0]
    for t in range(4):
        fits = []
        for a, b in itertools.product(range(4), range(4)):
            u = fb.on_grid(sx[t], grid[a : a + 1])[:, 0].mean(0)
            fits.append((_lstsq(gb.on_grid(u, grid[b : b + 1])[:, 0].mean(0), sy[t])[0], a, b))
        _, a, b = min(fits)
        assert float(fast["cf"][t]) == float(grid[a]) and float(fast["cg"][t]) == float(grid[b])
    assert learner.choices(batch) == {}


def test_training_lowers_the_annealed_chain_objective():
    learner = _learner(seed=3)
    batch = random_batch(8, 6, 6, seed=9, y=lambda x: torch.sin(2 * torch.tanh(x)))
    opt = torch.optim.Adam(learner.parameters(), lr=0.02)
    first = None
    for step in range(30):
        opt.zero_grad()
        loss = learner.meta_step(batch, step=step).objective
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.parameters())
    assert float(learner.meta_step(batch, step=30).objective.detach()) < 0.7 * first


def test_an_unknown_structure_is_refused():
    with pytest.raises(ValueError, match="structure=tree: expected one of sum, chain"):
        AnnealedSumLearner(f_banks=[WarpLineBank(count=1)], g_banks=[WarpLineBank(count=1)],
                           tau_start=1.0, tau_end=0.1, anneal_steps=1, eval_contexts=2,
                           ridge=1e-4, structure="tree")  # fmt: skip


@pytest.mark.parametrize("init", [["random", "identity"], OmegaConf.create(["random", "identity"])])
def test_each_bank_can_start_its_own_way(init):
    """``init: [f's, g's]``: the chain's f-tables random (values of about +-0.3 per knot), its
    g-tables the line ``u`` plus a smooth curve; the spec of each bank says which."""
    torch.manual_seed(0)
    learner = annealed_sum_learner(encoder=mlp_graph(hidden=[2]), targets=1, classification=False,
                                   structure="chain", init=init, replicas=2, span=9.0,
                                   g_span=3.0, contexts=3)  # fmt: skip
    for f, g in zip(learner.f_banks, learner.g_banks, strict=True):
        assert (f.spec()["init"], g.spec()["init"]) == ("random", "identity")
        line = torch.linspace(-3.0, 3.0, g.table.shape[1])
        assert float((g.table.detach() - line).abs().max()) < 1.5  # the line, bent a little
        assert float(f.table.detach().abs().max()) < 1.5  # no line of slope 1 on [-9, 9]
    one = annealed_sum_learner(encoder=mlp_graph(hidden=[2]), targets=1, classification=False,
                               init="identity", contexts=3)  # fmt: skip
    assert {b.spec()["init"] for b in [*one.f_banks, *one.g_banks]} == {"identity"}


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"init": ["random", "zeros"]}, r"init=\['random', 'zeros'\]: expected one of"),
        ({"init": ["random"] * 3}, "or two of them"),
        ({"init": "line"}, "init=line: expected one of random, identity"),
        ({"init": ["random", "identity"], "candidates": [4]}, "shared by both terms"),
    ],
)
def test_a_wrong_init_is_refused_by_name(kw, match):
    with pytest.raises(ValueError, match=match):
        annealed_sum_learner(encoder=mlp_graph(hidden=[2]), targets=1, classification=False,
                             contexts=3, **kw)  # fmt: skip
