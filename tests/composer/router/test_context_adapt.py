"""CAVIA-style candidates in a routed pool: ``algo.adapt`` names parameters by glob pattern, and
the inner loop moves only the chosen candidate's context (against a hand-unrolled float64 loop),
never the candidates' weights."""

import pytest
import torch

from metacompose.algorithms import InnerLoop
from metacompose.router import ArgmaxRouting, RoutedMetaLearner, build_pool
from metacompose.router.build import build_router
from metacompose.tasks.base import TaskBatch

SCALE, LR, STEPS = 1.5, 0.2, 4
TEMPLATE = {
    "nodes": {
        "f": {"type": "ContextMLP", "candidates": 3, "modulate": False,
              "args": {"in_features": 1, "context": 1, "out_features": 1,
                       "activate_output": False, "context_scale": SCALE}},
        "post": {"type": "Linear", "args": {"in_features": 1, "out_features": 1}},
    },
    "edges": [["f", "post"]],
}  # fmt: skip


def test_adapt_entries_are_slots_or_parameter_patterns():
    pool = build_pool(TEMPLATE)
    assert pool.param_keys(["post", "f.*.context"]) == [
        "f.0.context", "f.1.context", "f.2.context", "post.0.linear.weight", "post.0.linear.bias",
    ]  # fmt: skip
    assert pool.param_keys(["f.1.context"]) == ["f.1.context"]
    assert len(pool.param_keys(["f"])) == 3 * 3  # context, weight, bias per candidate
    with pytest.raises(KeyError, match=r"'f\.\*\.ctx'"):
        pool.param_keys(["f.*.ctx"])


def learner():
    torch.manual_seed(4)
    pool = build_pool(TEMPLATE)
    router = build_router(pool=pool, in_features=1, out_features=1, encoder_hidden=8,
                          embedding=6, hidden=8, routed=True, film=False, low_rank=0)  # fmt: skip
    return RoutedMetaLearner(
        pool=pool,
        router=router,
        training_routing=ArgmaxRouting(),
        eval_routing=ArgmaxRouting(),
        adapt_nodes=["f.*.context"],
        inner=InnerLoop(lr=LR, steps=STEPS, eval_steps=STEPS),
    ).double()


def test_inner_loop_adapts_the_chosen_context_as_hand_unrolled_sgd():
    lrn = learner()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 8, 1, generator=g, dtype=torch.float64) * 4 - 2
    y = torch.sin(2 * x) + torch.rand(5, 1, 1, generator=g, dtype=torch.float64)
    batch = TaskBatch(support_x=x, support_y=y, query_x=x, query_y=y)
    choice = lrn.choices(batch)["f"]
    fast, _ = lrn.adapt(x, y, steps=STEPS)
    assert set(fast) == {"f.0.context", "f.1.context", "f.2.context", "route.f"}
    p = {k: v.detach() for k, v in lrn.graph.named_parameters()}
    a, d = p["post.0.linear.weight"].item(), p["post.0.linear.bias"].item()
    for t in range(5):
        i = int(choice[t])
        (wx, wc), b = (
            p[f"f.{i}.mlp.layers.0.weight"][0].tolist(),
            p[f"f.{i}.mlp.layers.0.bias"].item(),
        )
        c = 0.0
        for _ in range(STEPS):  # pred = a (wx x + wc s c + b) + d; d mean(r^2) / dc
            r = a * (wx * x[t, :, 0] + wc * SCALE * c + b) + d - y[t, :, 0]
            c -= LR * 2 * a * wc * SCALE * r.mean().item()
        for j in range(3):
            want = c if j == i else 0.0  # an unchosen candidate's context gets no gradient
            assert fast[f"f.{j}.context"][t].item() == pytest.approx(want, abs=1e-12)
        assert c != 0.0


def test_meta_step_trains_the_weights_and_never_the_context():
    lrn = learner()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 6, 1, generator=g, dtype=torch.float64)
    b = TaskBatch(support_x=x, support_y=x**2, query_x=x, query_y=x**2)
    lrn.meta_step(b).objective.backward()
    pool = dict(lrn.graph.named_parameters())
    assert all(pool[f"f.{j}.context"].grad is None for j in range(3))
    assert pool["post.0.linear.weight"].grad is not None
    assert any(pool[f"f.{j}.mlp.layers.0.weight"].grad.abs().sum() > 0 for j in range(3))


def test_exported_graph_carries_the_adapted_context():
    lrn = learner()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 6, 1, generator=g, dtype=torch.float64) * 2 - 1
    b = TaskBatch(support_x=x, support_y=torch.cos(3 * x), query_x=x, query_y=torch.cos(3 * x))
    exports = lrn.export_tasks(b)
    fast, frozen = lrn.adapt(b.support_x, b.support_y, steps=STEPS)
    for t, e in enumerate(exports):
        task = {**frozen, **{k: v[t] for k, v in fast.items()}}
        torch.testing.assert_close(
            e.graph.apply_params(e.adapted, x[t]), lrn.graph.apply_params(task, x[t]),
            atol=1e-12, rtol=0,
        )  # fmt: skip
        ctx = e.adapted["f.context"]
        assert ctx.item() != 0.0 and e.meta["f.context"].item() == 0.0
        torch.testing.assert_close(ctx, fast[f"f.{e.choice['f']}.context"][t], atol=1e-12, rtol=0)
