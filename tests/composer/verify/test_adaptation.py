"""Adaptations of plain and routed learners become certifiable pairs; a violation whose input does
not reproduce on the real graph is downgraded to unknown."""

import torch

from metacompose.algorithms import InnerLoop
from metacompose.models import mlp_graph
from metacompose.modules.linear import RegressionHead
from metacompose.modules.mlp import MLPBlock
from metacompose.router import RoutedMetaLearner
from metacompose.router.build import build_router
from metacompose.router.policies import one_hot_decision
from metacompose.router.pool import ModulePool
from metacompose.symbolic import (
    CertificationReport,
    ClaimResult,
    Counterexample,
    Unknown,
    Violated,
    spec_from_dict,
)
from metacompose.tasks.base import TaskBatch
from metacompose.verify import TaskAdaptation, graph_forward, graph_to_network, replay_on_graph
from metacompose.verify.adaptation import adapt_tasks


def test_non_reproducing_violation_becomes_unknown():
    torch.manual_seed(0)
    graph = mlp_graph(hidden=[6, 6])
    meta = {k: v.detach().double() for k, v in graph.named_parameters()}
    adapted = {k: v + 0.01 for k, v in meta.items()}
    a = TaskAdaptation(graph, meta, adapted, torch.zeros(3, 1), torch.zeros(3, 1), {})
    spec = spec_from_dict(
        {"domain": {"box": {"lower": [-1.0], "upper": [1.0]}}, "deviation": {"max_abs": [0.5]}}
    )
    x = torch.tensor([0.3], dtype=torch.float64)
    dev = float(
        (graph_forward(graph, adapted, x[None]) - graph_forward(graph, meta, x[None])).abs()
    )
    fake = Violated(Counterexample(x=x, y=None, note="fake"), observed=1.0)
    outside = Violated(
        Counterexample(x=torch.tensor([3.0], dtype=torch.float64), y=None, note="o"), 9.0
    )
    real_limit = dev / 2  # this one does reproduce
    rep = CertificationReport(
        (
            ClaimResult("deviation[0]", 0.5, fake, "refine", 0.0),
            ClaimResult("deviation[0]", 0.5, outside, "refine", 0.0),
            ClaimResult("deviation[0]", real_limit, fake, "refine", 0.0),
        ),
        0.0,
    )
    out = replay_on_graph(rep, a, spec, a.query_x).results
    assert isinstance(out[0].outcome, Unknown) and "not reproduced" in out[0].outcome.reason
    assert isinstance(out[1].outcome, Unknown) and "outside the domain" in out[1].outcome.reason
    assert isinstance(out[2].outcome, Violated)


class _Alternate:
    """A routing policy: task t takes candidate t % 2 of every routed slot."""

    label = "hard-alternate"

    def decide(self, problem):
        choice = {s: torch.arange(problem.num_tasks) % 2 for s in problem.sizes}
        return one_hot_decision(choice, problem.sizes, problem.like)


def test_routed_adaptations_are_exported_per_task():
    torch.manual_seed(0)
    pool = ModulePool(
        slots={
            "a": [MLPBlock(in_features=1, hidden=[], out_features=4) for _ in range(2)],
            "h": [RegressionHead(in_features=4, out_features=1)],
        },
        edges=[("a", "h")],
    )
    router = build_router(pool=pool, in_features=1, out_features=1, encoder_hidden=4,
                          embedding=4, hidden=4, routed=True, film=False, low_rank=0)  # fmt: skip
    learner = RoutedMetaLearner(
        pool=pool,
        router=router,
        training_routing=_Alternate(),
        eval_routing=_Alternate(),
        inner=InnerLoop(lr=0.1),
    )
    x = torch.randn(2, 5, 1)
    batch = TaskBatch(support_x=x, support_y=torch.sin(x), query_x=x, query_y=x)
    ads = adapt_tasks(learner, batch, steps=2)
    fast, frozen = learner.adapt(batch.support_x, batch.support_y, steps=2, first_order=True)
    z = torch.linspace(-2, 2, 50).reshape(-1, 1)
    for t, a in enumerate(ads):
        assert a.choice == {"a": t % 2}
        with torch.no_grad():
            ref = pool.apply_params({**frozen, **{k: v[t] for k, v in fast.items()}}, z)
        got = graph_to_network(a.graph, a.adapted)(z.double())
        torch.testing.assert_close(got, ref.double(), atol=1e-5, rtol=0)
        assert any(not torch.equal(a.meta[k], a.adapted[k]) for k in a.meta)
