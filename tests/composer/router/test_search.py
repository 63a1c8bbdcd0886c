"""Routing by search: enumeration order, the vmapped search against a hand-unrolled float64 loop,
search-routed meta-training (router gradients) and support-search routing at evaluation."""

import itertools

import pytest
import torch
from routed_testing import reference_losses

from metacompose.algorithms import InnerLoop
from metacompose.router import (
    ArgmaxRouting,
    RelaxedRouting,
    RoutedMetaLearner,
    SearchRouting,
    SupportSearchRouting,
    TemperatureSchedule,
    build_pool,
)
from metacompose.router.build import build_router
from metacompose.router.pool import route_key
from metacompose.router.search import MAX_COMBINATIONS, route_combinations, search_routes
from metacompose.tasks import CompositionalFamily

T, K, Q = 4, 6, 5
TEMPLATE = {
    "nodes": {
        "pre": {"type": "Linear", "args": {"in_features": 1, "out_features": 1}},
        "inner": {
            "type": "MLPBlock",
            "candidates": 3,
            "modulate": False,
            "args": {"in_features": 1, "hidden": [6], "out_features": 1, "activation": "tanh"},
        },
        "outer": {
            "type": "MLPBlock",
            "candidates": 2,
            "modulate": False,
            "args": {
                "in_features": 1,
                "hidden": [5],
                "out_features": 1,
                "activation": "tanh",
                "activate_output": False,
            },
        },
    },
    "edges": [["pre", "inner"], ["inner", "outer"]],
}
LR = 0.3


def make_learner(*, search_steps=0, search_noise=False, eval_routing="router"):
    torch.manual_seed(5)
    pool = build_pool(TEMPLATE)
    router = build_router(
        pool=pool,
        in_features=1,
        out_features=1,
        encoder_hidden=8,
        embedding=6,
        hidden=8,
        routed=True,
        film=True,
        low_rank=0,
    )
    schedule = TemperatureSchedule(start=1.0, end=0.1, steps=10)
    training = RelaxedRouting(schedule=schedule)
    if search_steps:
        anneal = schedule if search_noise else None
        training = SearchRouting(steps=search_steps, weight=1.0, then=training, anneal=anneal)
    learner = RoutedMetaLearner(
        pool=pool,
        router=router,
        training_routing=training,
        eval_routing=SupportSearchRouting() if eval_routing == "search" else ArgmaxRouting(),
        adapt_nodes=["pre"],
        seed=3,
        inner=InnerLoop(lr=LR, steps=1, eval_steps=2),
    )
    with torch.no_grad():  # non-zero generated FiLM of the "pre" slot, so that it matters
        learner.router.modulation.weight.normal_(0.0, 0.3)
    return learner.double()


def batch(n=T):
    fam = CompositionalFamily()
    return fam.sample(n, shots=K, query=Q, generator=torch.Generator().manual_seed(2)).to(
        "cpu", torch.float64
    )


def test_route_combinations_order_and_limit():
    combos = route_combinations({"a": 3, "b": 2})
    assert combos.tolist() == [list(c) for c in itertools.product(range(3), range(2))]
    with pytest.raises(ValueError, match="exceeds"):
        route_combinations({"a": MAX_COMBINATIONS, "b": 2})


def test_search_matches_hand_unrolled_loop():
    learner, b = make_learner(), batch()
    out = learner.router(torch.cat([b.support_x, b.support_y], -1))
    fast, frozen, lrs = learner.task_params(out, {})
    choice, losses = search_routes(
        learner.graph,
        fast,
        frozen,
        lrs,
        (b.support_x, b.query_x),
        (b.support_y, b.query_y),
        steps=2,
        loss="mse",
    )
    ref = reference_losses(learner, b, steps=2, score_x=b.query_x, score_y=b.query_y)
    torch.testing.assert_close(losses, ref, atol=1e-10, rtol=1e-8)
    best = route_combinations({"inner": 3, "outer": 2})[ref.argmin(dim=0)]
    assert choice["inner"].tolist() == best[:, 0].tolist()
    assert choice["outer"].tolist() == best[:, 1].tolist()


def test_searched_meta_step_trains_router_and_pool():
    learner, b = make_learner(search_steps=5), batch()
    calls, search = [], learner.search
    learner.search = lambda *a, **k: calls.append(1) or search(*a, **k)
    step = learner.meta_step(b, step=4)
    assert len(calls) == 1  # meta-iteration 4 < search_steps: routed by search
    step.objective.backward()
    for name in ("logits.inner.weight", "logits.outer.weight", "encoder.phi.layers.0.weight"):
        g = dict(learner.router.named_parameters())[name].grad
        assert g is not None and g.abs().sum() > 0, name
    pool_grads = [p.grad for k, p in learner.graph.named_parameters() if k.startswith("inner.")]
    assert any(g is not None and g.abs().sum() > 0 for g in pool_grads)
    learner.meta_step(b, step=5)  # from search_steps on: the router's own (relaxed) routing
    assert len(calls) == 1


def test_searched_objective_adds_the_cross_entropy_to_the_searched_choice():
    learner, b = make_learner(search_steps=5), batch()
    ref = reference_losses(learner, b, steps=1, score_x=b.query_x, score_y=b.query_y)
    best = route_combinations({"inner": 3, "outer": 2})[ref.argmin(dim=0)]
    step = learner.meta_step(b, step=0)
    logits = learner.router(torch.cat([b.support_x, b.support_y], -1)).logits
    ce = [torch.nn.functional.cross_entropy(logits[s], best[:, i]) for i, s in enumerate(logits)]
    expected = step.query_loss.mean() + sum(ce) / 2
    torch.testing.assert_close(step.objective, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(step.query_loss, ref[ref.argmin(dim=0), torch.arange(T)])


def test_eval_search_routing_picks_lowest_support_loss():
    learner, b = make_learner(eval_routing="search"), batch()
    learner.eval()
    ref = reference_losses(learner, b, steps=2, score_x=b.support_x, score_y=b.support_y)
    best = route_combinations({"inner": 3, "outer": 2})[ref.argmin(dim=0)]
    choice = learner.choices(b)
    assert choice["inner"].tolist() == best[:, 0].tolist()
    assert choice["outer"].tolist() == best[:, 1].tolist()
    # evaluation runs the same routing: step-0 query loss equals the hand-routed model's
    curve = learner.evaluate(b, steps=0)
    out = learner.router(torch.cat([b.support_x, b.support_y], -1))
    for t in range(T):
        w = {k: v.detach() for k, v in learner.graph.named_parameters()}
        w.update({k: v[t].detach() for k, v in out.modulations.items()})
        w[route_key("inner")] = torch.nn.functional.one_hot(best[t, 0], 3).double()
        w[route_key("outer")] = torch.nn.functional.one_hot(best[t, 1], 2).double()
        pred = learner.graph.apply_params(w, b.query_x[t])
        torch.testing.assert_close(curve[0, t], ((pred - b.query_y[t]) ** 2).mean())


def test_inspect_reports_the_searched_routing():
    from metacompose.router.inspection import inspect_routed

    learner, b = make_learner(eval_routing="search"), batch()
    learner.eval()
    choice = learner.choices(b)
    graphs = inspect_routed(learner, CompositionalFamily(), b)
    for t, tg in enumerate(graphs):
        assert tg.choice == {s: int(c[t]) for s, c in choice.items()}
