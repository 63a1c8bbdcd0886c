"""The annealed sum learner against brute force: routing on the support set equals an exhaustive
float64 least-squares search over every pair and context pair; tasks planted from the banks are
recovered exactly; the annealed objective is bounded by the hard minimum; the exported graph
computes the same function."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from annealed_testing import random_batch

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.algorithms.annealed_sum_builder import annealed_sum_learner
from metacompose.graph import ModuleGraph
from metacompose.modules.linear import Identity
from metacompose.modules.warp_line import WarpLineBank
from metacompose.router.metrics import routing_purity
from metacompose.tasks.base import TaskBatch


def _learner(
    seed: int = 0,
    replicas: int = 1,
    eval_contexts: int = 4,
    routing: str = "data",
    counts: tuple[int, int] = (2, 3),
    structure: str = "sum",
) -> AnnealedSumLearner:
    torch.manual_seed(seed)
    kw = {"knots": 10, "span": 3.0, "contexts": 3, "spread": 1.0}
    g_kw = kw | {"span": 1.5} if structure == "chain" else kw  # the chain's g reads f's outputs
    return AnnealedSumLearner(
        f_banks=[WarpLineBank(count=counts[0], **kw) for _ in range(replicas)],
        g_banks=[WarpLineBank(count=counts[1], **g_kw) for _ in range(replicas)],
        tau_start=1.0,
        tau_end=0.01,
        anneal_steps=10,
        eval_contexts=eval_contexts,
        ridge=1e-6,
        routing=routing,
        structure=structure,
    ).double()


def test_tau_falls_geometrically_and_then_stays():
    learner = _learner()
    assert learner.tau(0) == 1.0 and learner.tau(10) == pytest.approx(0.01)
    assert learner.tau(5) == pytest.approx(0.1) and learner.tau(1000) == pytest.approx(0.01)


def test_routing_on_the_support_set_is_the_exhaustive_least_squares_search():
    learner = _learner().eval()
    batch = random_batch(5, 6, 4)
    fast, _ = learner.adapt(batch.support_x, batch.support_y)
    grid = learner.eval_grid
    fb, gb = learner.f_banks[0], learner.g_banks[0]
    sx, sy = batch.support_x[..., 0], batch.support_y[..., 0]
    for t in range(5):
        best = (math.inf, None)
        for i, j, a, b in itertools.product(range(2), range(3), range(4), range(4)):
            hf = fb.on_grid(sx[t], grid[a : a + 1])[i, 0]
            hg = gb.on_grid(sx[t], grid[b : b + 1])[j, 0]
            cols = torch.stack([hf, hg, torch.ones_like(hf)], 1).detach()
            pen = torch.tensor([[1e-3, 0, 0], [0, 1e-3, 0]], dtype=torch.float64)  # ridge 1e-6
            target = torch.cat([sy[t], torch.zeros(2, dtype=torch.float64)])
            w = torch.linalg.lstsq(torch.cat([cols, pen]), target[:, None]).solution[:, 0]
            mse = float(((cols @ w - sy[t]) ** 2).mean())
            best = min(best, (mse, (i, j, a, b, w)), key=lambda r: r[0])
        i, j, a, b, w = best[1]
        assert (int(fast["f"][t]), int(fast["g"][t])) == (i, j)
        assert float(fast["cf"][t]) == float(grid[a]) and float(fast["cg"][t]) == float(grid[b])
        torch.testing.assert_close(fast["coef"][t], w, rtol=1e-7, atol=1e-9)


def test_tasks_planted_from_the_banks_are_routed_back_exactly():
    learner = _learner(seed=2).eval()
    fb, gb, grid = learner.f_banks[0], learner.g_banks[0], learner.eval_grid
    truth_f = torch.tensor([0, 1, 1, 0, 1, 0])
    truth_g = torch.tensor([2, 0, 1, 1, 2, 0])
    cf, cg = grid[torch.tensor([0, 3, 1, 2, 2, 0])], grid[torch.tensor([3, 3, 0, 1, 2, 1])]
    amp = torch.tensor([[1.5, -0.7, 0.2], [-1.0, 2.0, 0.0], [0.8, 0.8, -1.0]] * 2).double()

    def planted(x):
        hf = fb.chosen(x[..., 0], truth_f, cf)
        hg = gb.chosen(x[..., 0], truth_g, cg)
        return (amp[:, :1] * hf + amp[:, 1:2] * hg + amp[:, 2:]).detach()[..., None]

    batch = random_batch(6, 12, 8, seed=5, y=planted)
    choice = learner.choices(batch)
    assert torch.equal(choice["f"], truth_f) and torch.equal(choice["g"], truth_g)
    assert learner.evaluate(batch).max() < 1e-8
    purity = routing_purity(
        {k: v.tolist() for k, v in choice.items()},
        {"f": truth_f.tolist(), "g": truth_g.tolist()},
        {"f": ("a", "b"), "g": ("c", "d", "e")},
        learner.graph.num_candidates,
    )
    assert purity["joint_nmi"] == pytest.approx(1.0)


def test_annealed_objective_lies_between_the_hard_minimum_and_tau_log_n_above_it():
    learner = _learner(replicas=2)
    batch = random_batch(4, 6, 4, seed=7)
    x = torch.cat([batch.support_x, batch.query_x], 1)[..., 0]
    y = torch.cat([batch.support_y, batch.query_y], 1)[..., 0]
    with torch.no_grad():
        hard = sum(
            learner._pair_mse(r, x, y, None)[0].flatten(0, 1).min(0).values.mean().item()
            for r in range(2)
        )
    n = (2 * 3) * (3 * 3)
    for step in (0, 4, 10):
        obj = learner.meta_step(batch, step=step).objective.item()
        assert hard - 1e-12 <= obj <= hard + 2 * learner.tau(step) * math.log(n) + 1e-12
    step = learner.meta_step(batch, step=10)
    step.objective.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in learner.parameters())


def test_the_kept_replica_is_the_lowest_running_fit_and_only_training_moves_it():
    learner = _learner(replicas=3)
    assert learner.kept == 0 and torch.isnan(learner.fit).all()
    batch = random_batch(4, 6, 4)
    learner.eval()
    learner.meta_step(batch, step=0)
    assert torch.isnan(learner.fit).all()  # validation does not select replicas
    learner.train()
    learner.meta_step(batch, step=0)
    first = learner.fit.clone()
    assert torch.isfinite(first).all() and learner.kept == int(first.argmin())
    learner.meta_step(batch, step=1)
    torch.testing.assert_close(learner.fit, first)  # same batch, same fit: the mean holds
    with torch.no_grad():
        learner.fit.copy_(torch.tensor([0.3, 0.1, 0.2]))
    assert learner.kept == 1


@pytest.mark.parametrize("structure", ["sum", "chain"])
@pytest.mark.parametrize(
    "routing, counts", [("data", (2, 3)), ("uniform", (2, 3)), ("uniform", (1, 3))]
)
def test_the_exported_graph_computes_the_routed_prediction(routing, counts, structure):
    """Sum: x -> f -> amp_f -> sum <- amp_g <- g <- x; chain: x -> f -> g -> amp."""
    learner = _learner(seed=4, routing=routing, counts=counts, structure=structure).eval()
    batch = random_batch(3, 6, 5, seed=2)
    fast, _ = learner.adapt(batch.support_x, batch.support_y)
    want = learner.predict(fast, batch.query_x)
    for t, ex in enumerate(learner.export_tasks(batch)):
        assert isinstance(ex.graph, ModuleGraph) and isinstance(ex.graph.node("x"), Identity)
        assert ex.graph.graph.has_edge("g", "amp") == (structure == "chain")
        routed = {"f": int(fast["f"][t]), "g": int(fast["g"][t])}
        assert ex.choice == (routed if routing == "data" else {})
        assert set(ex.meta) == set(ex.adapted) == set(dict(ex.graph.named_parameters()))
        got = ex.graph.apply_params(ex.adapted, batch.query_x[t])
        torch.testing.assert_close(got, want[t], rtol=1e-9, atol=1e-9)
        assert ex.graph.apply_params(ex.meta, batch.query_x[t]).abs().max() == 0


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"targets": 2}, "one input and one regression target"),
        ({"classification": True}, "one input and one regression target"),
        (
            {"candidates": [2, 2, 2]},
            r"candidates=\[2, 2, 2\]: must be \[f-candidates, g-candidates\]",
        ),
        ({"replicas": 0}, "replicas=0: must be >= 1"),
        ({"tau_end": 2.0}, "tau_end=2.0: must be > 0 and <= tau_start=1.0"),
        ({"ridge": 0.0}, "ridge=0.0: must be > 0"),
        ({"g_span": -1.0}, r"g_span=-1.0: must be in \(0, 1e4\]"),
        ({"structure": "tree"}, "structure=tree: expected one of sum, chain"),
        ({"g_span": 2.0, "max_shift": 3.0}, r"max_shift=3.0: must be <= g_span=2.0"),
    ],
)
def test_the_builder_refuses_what_it_cannot_fit(kw, match):
    from metacompose.models import mlp_graph

    args = {"encoder": mlp_graph(hidden=[2]), "targets": 1, "classification": False} | kw
    with pytest.raises(ValueError, match=match):
        annealed_sum_learner(**args)


def test_fits_needing_amplitudes_beyond_meta_training_are_not_admitted():
    """With an amplitude limit, routing is the exhaustive search over the fits within it; a task
    that no fit within it explains takes the best fit of all."""
    learner = _learner(seed=6).eval()
    batch = random_batch(6, 6, 4, seed=3)
    sx, sy = batch.support_x[..., 0], batch.support_y[..., 0]
    with torch.no_grad():
        mse, amp = (v.flatten(0, 1) for v in learner._pair_mse(0, sx, sy, learner.eval_grid))
    unlimited, _ = learner.adapt(batch.support_x, batch.support_y)
    limit = float(amp.gather(0, mse.argmin(0)[None]).median())  # binds on about half the tasks
    with torch.no_grad():
        learner.amplitude.fill_(limit)
    fast, _ = learner.adapt(batch.support_x, batch.support_y)
    d, grid = 3 * 4, learner.eval_grid
    for t in range(6):
        ok = amp[:, t] <= limit
        want = torch.where(ok, mse[:, t], math.inf).argmin() if ok.any() else mse[:, t].argmin()
        row, col = divmod(int(want), d)
        assert (int(fast["f"][t]), int(fast["g"][t])) == (row // 4, col // 4)
        assert float(fast["cf"][t]) == float(grid[row % 4])
        assert float(fast["cg"][t]) == float(grid[col % 4])
        if amp[mse[:, t].argmin(), t] <= limit:  # the limit does not bind: the same choice
            assert int(fast["f"][t]) == int(unlimited["f"][t])
    assert (fast["coef"][:, :2].abs().amax(1) <= limit * (1 + 1e-6)).sum() >= 3


def test_training_tracks_each_replicas_fit_and_amplitude():
    learner = _learner(replicas=2).train()
    batch = random_batch(4, 6, 4)
    learner.meta_step(batch, step=0)
    x = torch.cat([batch.support_x, batch.query_x], 1)[..., 0]
    y = torch.cat([batch.support_y, batch.query_y], 1)[..., 0]
    for r in range(2):
        mse, amp = (v.flatten(0, 1) for v in learner._pair_mse(r, x, y, None))
        best = mse.argmin(0)
        torch.testing.assert_close(learner.fit[r], mse.min(0).values.mean().detach())
        torch.testing.assert_close(learner.amplitude[r], amp.gather(0, best[None]).max().detach())


def test_what_resume_and_evaluation_need_is_in_the_state_dict():
    """The replica choice and the amplitude limit are buffers: a checkpoint carries them, and a
    learner rebuilt from it routes as the one that wrote it."""
    learner = _learner(replicas=3).train()
    batch = random_batch(4, 6, 4)
    learner.meta_step(batch, step=0)
    state = learner.state_dict()
    assert {"fit", "amplitude"} <= set(state)
    again = _learner(seed=9, replicas=3)
    again.load_state_dict(state)
    again.eval()
    learner.eval()
    assert again.kept == learner.kept
    torch.testing.assert_close(again.evaluate(batch), learner.evaluate(batch), rtol=0, atol=0)


def _with_descriptor(batch: TaskBatch, f: torch.Tensor, g: torch.Tensor) -> TaskBatch:
    desc = torch.cat([torch.nn.functional.one_hot(f, 2), torch.nn.functional.one_hot(g, 3)], 1)
    return TaskBatch(
        support_x=batch.support_x,
        support_y=batch.support_y,
        query_x=batch.query_x,
        query_y=batch.query_y,
        descriptor=desc.double(),
    )


def test_descriptor_routing_fits_only_each_tasks_true_pair():
    learner = _learner(seed=8)
    learner.routing = learner.eval_routing = "descriptor"
    f, g = torch.tensor([1, 0, 1, 0]), torch.tensor([2, 2, 0, 1])
    batch = _with_descriptor(random_batch(4, 6, 4, seed=4), f, g)
    x = torch.cat([batch.support_x, batch.query_x], 1)[..., 0]
    y = torch.cat([batch.support_y, batch.query_y], 1)[..., 0]
    with torch.no_grad():
        mse = learner._pair_mse(0, x, y, None)[0].view(2, 3, 3, 3, 4)  # (C, G, D, G, T)
    tau = learner.tau(10)
    want = torch.stack([mse[f[t], :, g[t], :, t].flatten() for t in range(4)])  # (T, G G)
    soft = -tau * torch.logsumexp(-want / tau, 1) + tau * math.log(9)
    got = learner.meta_step(batch, step=10).objective
    torch.testing.assert_close(got, soft.mean(), rtol=1e-12, atol=1e-12)
    learner.eval()
    assert torch.equal(learner.choices(batch)["f"], f) and torch.equal(
        learner.choices(batch)["g"], g
    )
    learner.eval_routing = (
        "data"  # the intermediate variant: trained by descriptor, routed from data
    )
    data_choice = learner.choices(batch)
    fast, _ = learner.adapt(batch.support_x, batch.support_y)
    assert torch.equal(data_choice["f"], fast["f"])
    with pytest.raises(ValueError, match="one-hot \\(f, g\\) descriptor of width 5"):
        learner.routing = "descriptor"
        learner.meta_step(random_batch(4, 6, 4), step=0)


def test_a_structure_written_before_the_warp_bounds_existed_reads_as_the_defaults():
    """Checkpoints from before the warp bounds, the chain (``structure``, ``g_span``) and
    ``init`` existed read as what they were: a sum of randomly started banks of one span."""
    learner = _learner()
    data = learner.graph.to_json_dict()
    newer = ("max_stretch", "max_shift", "init", "g_span")
    old = {k: v for k, v in data.items() if k != "structure"}
    old["bank"] = {k: v for k, v in data["bank"].items() if k not in newer}
    assert type(learner.graph).from_json_dict(old).to_json_dict() == data
    chain = _learner(structure="chain").graph.to_json_dict()
    assert chain["structure"] == "chain" and chain["bank"]["g_span"] == 1.5


def test_descriptor_routing_at_evaluation_is_the_search_over_the_true_pairs_contexts():
    learner = _learner(seed=10).eval()
    learner.eval_routing = "descriptor"
    f, g = torch.tensor([0, 1, 1, 0, 1]), torch.tensor([2, 0, 1, 1, 2])
    batch = _with_descriptor(random_batch(5, 6, 4, seed=6), f, g)
    fast = learner._eval_route(batch)
    grid = learner.eval_grid
    sx, sy = batch.support_x[..., 0], batch.support_y[..., 0]
    with torch.no_grad():
        mse = learner._pair_mse(0, sx, sy, grid)[0].view(2, 4, 3, 4, 5)
    for t in range(5):
        a, b = divmod(int(mse[f[t], :, g[t], :, t].argmin()), 4)
        assert (int(fast["f"][t]), int(fast["g"][t])) == (int(f[t]), int(g[t]))
        assert float(fast["cf"][t]) == float(grid[a]) and float(fast["cg"][t]) == float(grid[b])


def test_uniform_routing_is_the_search_over_each_slots_mean_candidate():
    """The ablation without routing: each slot is the mean of all its candidates at one shared
    context; the fit is the exhaustive float64 least-squares search over context pairs."""
    learner = _learner(seed=5, routing="uniform").eval()
    batch = random_batch(4, 6, 5, seed=3)
    fast, _ = learner.adapt(batch.support_x, batch.support_y)
    pred = learner.predict(fast, batch.query_x)[..., 0]
    grid = learner.eval_grid
    fb, gb = learner.f_banks[0], learner.g_banks[0]
    sx, sy, qx = batch.support_x[..., 0], batch.support_y[..., 0], batch.query_x[..., 0]
    pen = torch.tensor([[1e-3, 0, 0], [0, 1e-3, 0]], dtype=torch.float64)  # ridge 1e-6
    for t in range(4):
        best = (math.inf, None)
        for a, b in itertools.product(range(4), range(4)):
            x = torch.cat([sx[t], qx[t]])
            hf = sum(fb.on_grid(x, grid[a : a + 1])[i, 0] for i in range(2)) / 2
            hg = sum(gb.on_grid(x, grid[b : b + 1])[j, 0] for j in range(3)) / 3
            cols = torch.stack([hf, hg, torch.ones_like(hf)], 1).detach()
            target = torch.cat([sy[t], torch.zeros(2, dtype=torch.float64)])
            w = torch.linalg.lstsq(torch.cat([cols[:6], pen]), target[:, None]).solution[:, 0]
            mse = float(((cols[:6] @ w - sy[t]) ** 2).mean())
            best = min(best, (mse, (a, b, w, cols[6:] @ w)), key=lambda r: r[0])
        a, b, w, want = best[1]
        assert (int(fast["f"][t]), int(fast["g"][t])) == (0, 0)
        assert float(fast["cf"][t]) == float(grid[a]) and float(fast["cg"][t]) == float(grid[b])
        torch.testing.assert_close(fast["coef"][t], w, rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(pred[t], want, rtol=1e-7, atol=1e-9)
    assert learner.choices(batch) == {}  # no routing, nothing to score


def test_uniform_routing_trains_every_candidate_and_is_used_as_trained():
    learner = _learner(seed=6, routing="uniform").train()
    step = learner.meta_step(random_batch(5, 6, 4, seed=4), step=0)
    step.objective.backward()
    for bank in (learner.f_banks[0], learner.g_banks[0]):
        grads = [p.grad for p in bank.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert (bank.table.grad.abs().sum(-1) > 0).all()  # every candidate learns from every task
    for routing, eval_routing in (("uniform", "data"), ("data", "uniform")):
        with pytest.raises(ValueError, match="uniform routing is trained and evaluated alike"):
            AnnealedSumLearner(
                f_banks=[WarpLineBank(count=2, knots=4)],
                g_banks=[WarpLineBank(count=2, knots=4)],
                tau_start=1.0, tau_end=0.1, anneal_steps=1, eval_contexts=3, ridge=1e-6,
                routing=routing, eval_routing=eval_routing,
            )  # fmt: skip
