"""Adaptations of plain and routed learners become certifiable pairs; a violation whose input does
not reproduce on the real graph is downgraded to unknown."""

import torch

from metacompose.models import mlp_graph
from metacompose.modules.linear import RegressionHead
from metacompose.modules.mlp import MLPBlock
from metacompose.router.pool import ModulePool, route_key
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


class _FakeRouted:
    """Just enough of a RoutedMetaLearner for adapt_tasks: fixed routing, one SGD-like change."""

    eval_inner_steps = 1

    def __init__(self, pool):
        self.graph = pool

    def adapt_batch(self, batch, *, steps, hard, first_order):
        t = batch.num_tasks
        pool = dict(self.graph.named_parameters())
        before = {k: v.detach().expand(t, *v.shape) for k, v in pool.items()}
        before[route_key("a")] = torch.nn.functional.one_hot(torch.arange(t) % 2, 2).float()
        after = {k: v + 0.1 * (k != route_key("a")) for k, v in before.items()}
        return before, after, {}, None


def test_routed_adaptations_are_exported_per_task():
    torch.manual_seed(0)
    pool = ModulePool(
        slots={
            "a": [MLPBlock(in_features=1, hidden=[], out_features=4) for _ in range(2)],
            "h": [RegressionHead(in_features=4, out_features=1)],
        },
        edges=[("a", "h")],
    )
    x = torch.randn(2, 5, 1)
    batch = TaskBatch(support_x=x, support_y=x, query_x=x, query_y=x)
    ads = adapt_tasks(_FakeRouted(pool), batch)
    z = torch.linspace(-2, 2, 50, dtype=torch.float64).reshape(-1, 1)
    for t, a in enumerate(ads):
        assert a.choice == {"a": t % 2}
        onehot = torch.nn.functional.one_hot(torch.tensor(t % 2), 2).double()
        p = {k: (v.detach() + 0.1).double() for k, v in pool.named_parameters()}
        p[route_key("a")] = onehot
        with torch.no_grad():
            ref = pool.apply_params(p, z)
        torch.testing.assert_close(graph_to_network(a.graph, a.adapted)(z), ref, atol=1e-12, rtol=0)
