"""A small routed learner over a 3 x 2 pool, built the way router.build wires the policies."""

import itertools

import torch

from metacompose.algorithms import InnerLoop
from metacompose.router import (
    ArgmaxRouting,
    ModulationAnchors,
    RelaxedRouting,
    RoutedMetaLearner,
    SearchRouting,
    SupportSearchRouting,
    TemperatureSchedule,
    UniformRouting,
    build_pool,
)
from metacompose.router.build import build_router
from metacompose.router.pool import route_key

TEMPLATE = {
    "nodes": {
        "inner": {
            "type": "MLPBlock",
            "candidates": 3,
            "args": {"in_features": 1, "hidden": [8], "out_features": 4, "activation": "tanh"},
        },
        "outer": {
            "type": "MLPBlock",
            "candidates": 2,
            "args": {
                "in_features": 4,
                "hidden": [6],
                "out_features": 1,
                "activation": "tanh",
                "activate_output": False,
            },
        },
    },
    "edges": [["inner", "outer"]],
}


def routed_learner(
    *, routing="learned", low_rank=1, film=True, hidden=12, search_steps=0, search_noise=False,
    eval_routing="router", anchors=0, anchor_init=0.5, anchor_rounds=4, balance_weight=0.1,
    entropy_weight=0.01, schedule=None, **kw,
):  # fmt: skip
    """A seeded routed learner; keyword names follow the ``router`` config keys."""
    torch.manual_seed(3)
    pool = build_pool(TEMPLATE)
    router = build_router(pool=pool, in_features=1, out_features=1, encoder_hidden=16,
                          embedding=8, hidden=hidden, routed=routing == "learned", film=film,
                          low_rank=low_rank)  # fmt: skip
    schedule = schedule or TemperatureSchedule(start=1.0, end=0.5, steps=10)
    if routing == "uniform":
        training, evaluation = UniformRouting(), UniformRouting()
    else:
        training = RelaxedRouting(schedule=schedule, balance_weight=balance_weight,
                                  entropy_weight=entropy_weight)  # fmt: skip
        if search_steps:
            training = SearchRouting(steps=search_steps, weight=1.0, then=training,
                                     anneal=schedule if search_noise else None)  # fmt: skip
        evaluation = SupportSearchRouting() if eval_routing == "search" else ArgmaxRouting()
    mods = ModulationAnchors(layout=router.layout, slot_of=router.layout_slot, count=anchors,
                             init=anchor_init, rounds=anchor_rounds) if anchors else None  # fmt: skip
    kw.setdefault("inner", InnerLoop(lr=0.05, steps=2, eval_steps=3))
    return RoutedMetaLearner(pool=pool, router=router, training_routing=training,
                             eval_routing=evaluation, anchors=mods, seed=7, **kw)  # fmt: skip


def reference_losses(learner, b, *, steps, score_x, score_y):
    """(K, T) score loss of every joint choice of a 3 x 2 pool ("inner", "outer"), one task and
    one choice at a time, by hand (plain SGD at the learner's inner step size)."""
    pool = learner.graph
    out = learner.router(torch.cat([b.support_x, b.support_y], -1))
    base = {k: v.detach() for k, v in pool.named_parameters()}
    rows = []
    for combo in itertools.product(range(3), range(2)):
        row = []
        for t in range(b.num_tasks):
            w = dict(base)
            w.update({k: v[t].detach() for k, v in out.modulations.items()})
            w[route_key("inner")] = torch.nn.functional.one_hot(torch.tensor(combo[0]), 3).double()
            w[route_key("outer")] = torch.nn.functional.one_hot(torch.tensor(combo[1]), 2).double()
            fast = {k: w[k].clone().requires_grad_(True) for k in learner.module_keys}
            for _ in range(steps):
                pred = pool.apply_params({**w, **fast}, b.support_x[t])
                loss = ((pred - b.support_y[t]) ** 2).mean()
                g = torch.autograd.grad(loss, list(fast.values()))
                fast = {
                    k: (v - learner.inner_lr * gk).detach().requires_grad_(True)
                    for (k, v), gk in zip(fast.items(), g)
                }
            pred = pool.apply_params({**w, **fast}, score_x[t])
            row.append(((pred - score_y[t]) ** 2).mean().detach())
        rows.append(torch.stack(row))
    return torch.stack(rows)
