"""Sequential adaptation against a hand-unrolled loop of ``MetaLearner.adapt`` calls."""

import pytest
import torch

from metacompose.algorithms import InnerLoop, MetaLearner
from metacompose.algorithms.losses import task_metric
from metacompose.models import mlp_graph
from metacompose.report.forgetting import sequential_metrics
from metacompose.tasks import SinusoidFamily
from metacompose.tasks.base import derive_seed


def reference(learner, tasks, steps):
    """One sequence at a time, one task at a time, with the learner's own adapt()."""
    n_seq, n = tasks[0].num_tasks, len(tasks)
    out = torch.full((n_seq, n, n), float("nan"), dtype=torch.float64)
    for s in range(n_seq):
        params = {k: v.detach().clone() for k, v in learner.graph.named_parameters()}
        for j, task in enumerate(tasks):
            fast, _ = learner.adapt(task.support_x[s : s + 1], task.support_y[s : s + 1],
                                         steps=steps, params=params, first_order=True)  # fmt: skip
            fast = {k: v[0] for k, v in fast.items()}
            params = {**params, **{k: v.detach() for k, v in fast.items()}}
            for i in range(j + 1):
                pred = learner.graph.apply_params(params, tasks[i].query_x[s])
                out[s, i, j] = float(task_metric(pred, tasks[i].query_y[s], "mse"))
    return out


@pytest.mark.parametrize("scope", [None, ["head"]])
def test_sequential_metrics_match_unrolled_reference(scope):
    learner = MetaLearner(graph=mlp_graph(hidden=[8, 8]), inner=InnerLoop(lr=0.05))
    fam = SinusoidFamily()
    got = sequential_metrics(learner, fam, n_sequences=3, length=3, shots=5, query=6, steps=2,
                             seed=4, scope=scope)  # fmt: skip
    g = torch.Generator().manual_seed(derive_seed(4, "test", "forgetting", 5, 6))
    tasks = [fam.sample(3, shots=5, query=6, generator=g, split="test") for _ in range(3)]
    if scope is not None:  # the reference: a learner whose own adaptation scope is ``scope``
        learner = MetaLearner(graph=learner.graph, adapt=scope, inner=InnerLoop(lr=0.05))
    ref = reference(learner, tasks, 2)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4, equal_nan=True)
    assert torch.isnan(got[:, 1, 0]).all() and not torch.isnan(got[:, 0, 2]).any()


def test_sequential_metrics_with_per_step_learning_rates():
    """MAML++ per-step step sizes (a list of dicts) follow the learner's own adapt()."""
    torch.manual_seed(0)
    inner = InnerLoop(lr=0.05, steps=2)
    learner = MetaLearner(graph=mlp_graph(hidden=[8, 8]), per_step_lr=True, inner=inner)
    with torch.no_grad():  # distinct rates per step, so using the wrong one would show
        for name, p in learner.step_sizes.items():
            p.fill_(0.02 if name.endswith("step0") else 0.07)
    fam = SinusoidFamily()
    got = sequential_metrics(learner, fam, n_sequences=3, length=3, shots=5, query=6, steps=2,
                             seed=4, scope=None)  # fmt: skip
    g = torch.Generator().manual_seed(derive_seed(4, "test", "forgetting", 5, 6))
    tasks = [fam.sample(3, shots=5, query=6, generator=g, split="test") for _ in range(3)]
    torch.testing.assert_close(got, reference(learner, tasks, 2), atol=1e-5, rtol=1e-4,
                               equal_nan=True)  # fmt: skip
