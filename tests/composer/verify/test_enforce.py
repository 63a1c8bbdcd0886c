"""Inner-loop enforcement: ``off`` leaves the numerics untouched, ``project`` yields certified
adaptations (checked against a dense grid too), ``reject`` rolls back to certified parameters."""

import pytest
import torch

from metacompose.algorithms import InnerLoop, MetaLearner
from metacompose.algorithms.inner_loop import adapt, broadcast_tasks
from metacompose.build import build_learner
from metacompose.config import ConfigError, load_config
from metacompose.models import mlp_graph
from metacompose.symbolic import certify, spec_from_dict
from metacompose.tasks.base import TaskBatch
from metacompose.verify import Enforcer, graph_forward, module_params, pair_from_params

SPEC = {
    "domain": {"box": {"lower": [-2.0], "upper": [2.0]}},
    "trust_regions": [{"module": "body", "norm": "l2", "bound": 0.3}],
    "deviation": {"max_abs": [0.25]},
}


def _learner(enforcer=None, lr=0.5):
    torch.manual_seed(0)
    graph = mlp_graph(in_features=1, hidden=[8, 8], out_features=1)
    return MetaLearner(graph=graph, enforcer=enforcer, inner=InnerLoop(lr=lr, steps=5))


def _tasks(t=6, k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 4 * torch.rand(t, k, 1, generator=g) - 2
    amp = 1 + 4 * torch.rand(t, 1, 1, generator=g)
    return x, amp * torch.sin(3 * x)


def _certified(learner, spec, fast, t):
    meta = {k: v.detach() for k, v in learner.graph.named_parameters()}
    adapted = {**meta, **{k: v[t].detach() for k, v in fast.items()}}
    rep = certify(
        pair_from_params(learner.graph, meta, adapted),
        spec,
        module_params=module_params(learner.graph, meta, adapted),
    )
    return rep.status == "proved", meta, adapted


def test_off_leaves_numerics_unchanged():
    x, y = _tasks()
    plain = _learner()
    off = _learner(Enforcer(spec=spec_from_dict(SPEC), mode="off"))
    fast, frozen = plain.split_params()
    ref = adapt(
        plain.graph,
        broadcast_tasks(fast, 6),
        frozen,
        plain.lrs(),
        x,
        y,
        steps=5,
        loss="mse",
        first_order=False,
    )
    for learner in (plain, off):
        got, _ = learner.adapt(x, y)
        for k in ref:
            assert torch.equal(got[k], ref[k])


def test_project_certifies_every_adaptation_and_stays_differentiable():
    spec = spec_from_dict(SPEC)
    enforcer = Enforcer(spec=spec, mode="project")
    learner = _learner(enforcer)
    x, y = _tasks()
    fast, _ = learner.adapt(x, y)
    assert enforcer.stats.checked == 6 and enforcer.stats.proved < 6  # pushed far: some repaired
    assert enforcer.stats.projected + enforcer.stats.rolled_back == 6 - enforcer.stats.proved
    grid = torch.linspace(-2, 2, 4001, dtype=torch.float64).reshape(-1, 1)
    for t in range(6):
        ok, meta, adapted = _certified(learner, spec, fast, t)
        assert ok
        dev = graph_forward(learner.graph, adapted, grid) - graph_forward(learner.graph, meta, grid)
        assert float(dev.abs().max()) <= 0.25
        delta = torch.cat(
            [(adapted[k] - meta[k]).reshape(-1) for k in meta if k.startswith("body.")]
        )
        assert float(delta.norm()) <= 0.3
    # The meta-gradient flows through the enforced parameters.
    learner.inner_steps = 2
    step = learner.meta_step(TaskBatch(support_x=x, support_y=y, query_x=x, query_y=y))
    step.objective.backward()
    grads = [p.grad for p in learner.graph.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.parametrize("every", ["end", "step"])
def test_reject_rolls_back_to_last_certified(every):
    x, y = _tasks()
    free, _ = _learner().adapt(x, y)
    # A trust region that about half of the free adaptations satisfy.
    base = _learner()
    norms = []
    for t in range(6):
        d = [free[k][t] - p for k, p in base.graph.named_parameters() if k.startswith("body.")]
        norms.append(float(torch.sqrt(sum((v.detach() ** 2).sum() for v in d))))
    bound = sorted(norms)[2] * 1.001
    spec = spec_from_dict(
        {
            **SPEC,
            "trust_regions": [{"module": "body", "norm": "l2", "bound": bound}],
            "deviation": {"max_abs": [1000.0]},
        }
    )
    enforcer = Enforcer(spec=spec, mode="reject", every=every)
    learner = _learner(enforcer)
    got, _ = learner.adapt(x, y)
    meta = dict(learner.graph.named_parameters())
    for t in range(6):
        assert _certified(learner, spec, got, t)[0]
        if every == "end":
            same_free = all(torch.equal(got[k][t], free[k][t]) for k in got)
            same_meta = all(torch.equal(got[k][t], meta[k]) for k in got)
            assert same_free == (norms[t] <= bound) and same_free != same_meta
    if every == "end":
        assert enforcer.stats.rolled_back == sum(n > bound for n in norms) >= 1
    else:
        assert enforcer.stats.checked == 6 * 5 and enforcer.stats.rolled_back >= 1


def test_enforce_config_builds_and_checks(tmp_path):
    root = __import__("pathlib").Path(__file__).resolve().parents[3]
    cfg = load_config(
        root / "configs" / "sinusoid.yaml",
        ["enforce.mode=project", f"enforce.spec={root}/configs/bounds/sinusoid.yaml"],
    )
    learner = build_learner(cfg)
    assert learner.enforcer is not None and learner.enforcer.mode == "project"
    assert build_learner(load_config(root / "configs" / "sinusoid.yaml")).enforcer is None
    off = load_config(root / "configs" / "sinusoid.yaml", ["enforce.mode=off"])  # YAML: false
    assert build_learner(off).enforcer is None
    with pytest.raises(ConfigError, match=r"enforce\.spec"):
        build_learner(load_config(root / "configs" / "sinusoid.yaml", ["enforce.mode=reject"]))
    with pytest.raises(ConfigError, match=r"enforce\.mode"):
        build_learner(load_config(root / "configs" / "sinusoid.yaml", ["enforce.mode=sometimes"]))
