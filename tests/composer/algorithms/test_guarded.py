"""The evaluation guard: plain SGD when every step is accepted, support loss never increases,
finite at 10x the training steps with adversarially large learned step sizes (sinusoid, Cigar)."""

import pytest
import torch

from metacompose.algorithms import InnerLoop, MetaLearner
from metacompose.algorithms.guarded import accept_if_lower, guarded_adapt
from metacompose.algorithms.inner_loop import broadcast_tasks, query_losses
from metacompose.build import build_family, build_learner
from metacompose.config import ConfigError, load_config
from metacompose.models import mlp_graph
from metacompose.tasks import SinusoidFamily


def tasks(t=5, k=6, q=4, seed=3):
    g = torch.Generator().manual_seed(seed)
    return SinusoidFamily().sample(t, shots=k, query=q, generator=g).to("cpu", torch.float64)


def meta_sgd(steps_size: float, *, inner_steps=1) -> MetaLearner:
    torch.manual_seed(0)
    graph = mlp_graph(in_features=1, hidden=[16, 16], out_features=1).double()
    inner = InnerLoop(lr=steps_size, steps=inner_steps, eval_steps=10 * inner_steps)
    learner = MetaLearner(graph=graph, algorithm="metasgd", inner=inner)
    return learner.double()


def hand_sgd(learner, b, steps):
    """Per-task loop of plain SGD with ``torch.autograd.grad`` (independent reference)."""
    out = []
    lrs = learner.lrs()
    for t in range(b.num_tasks):
        p = {k: v.detach().clone().requires_grad_() for k, v in learner.graph.named_parameters()}
        for _ in range(steps):
            loss = ((learner.graph.apply_params(p, b.support_x[t]) - b.support_y[t]) ** 2).mean()
            g = torch.autograd.grad(loss, list(p.values()))
            p = {k: (v - lrs[k] * gk).detach().requires_grad_() for (k, v), gk in zip(p.items(), g)}
        out.append(p)
    return {k: torch.stack([o[k] for o in out]) for k in out[0]}


@pytest.mark.parametrize("vectorize", [True, False])
def test_guard_equals_plain_sgd_when_every_step_is_accepted(vectorize):
    learner, b = meta_sgd(1e-3), tasks()
    learner.vectorize = vectorize
    with torch.no_grad():  # per-parameter step sizes, all small enough to be accepted
        for v in learner.step_sizes.values():
            v.uniform_(1e-4, 2e-3, generator=torch.Generator().manual_seed(1))
    losses = []
    fast, _ = learner.adapt(b.support_x, b.support_y, steps=8, first_order=True, guard=True,
                            on_step=lambda s, f: losses.append(support_loss(learner, f, b)))  # fmt: skip
    curve = torch.stack([support_loss(learner, learner.adapt(b.support_x, b.support_y, steps=0)[0], b),
                         *losses])  # fmt: skip
    assert (curve[1:] < curve[:-1]).all()  # every step accepted
    ref = hand_sgd(learner, b, 8)
    for k in fast:
        torch.testing.assert_close(fast[k], ref[k], atol=1e-12, rtol=1e-12)


def support_loss(learner, fast, b):
    return query_losses(learner.graph, fast, {}, b.support_x, b.support_y, loss="mse")


@pytest.mark.parametrize("size", [0.1, 3.0, 1e3])
def test_guard_never_increases_the_support_loss(size):
    learner, b = meta_sgd(size), tasks()
    fast0 = broadcast_tasks(dict(learner.graph.named_parameters()), b.num_tasks)
    curve = [support_loss(learner, fast0, b)]
    with torch.no_grad():
        guarded_adapt(learner.graph, fast0, {}, learner.lrs(), b.support_x, b.support_y, steps=30,
                      loss="mse", on_step=lambda s, f: curve.append(support_loss(learner, f, b)))  # fmt: skip
    curve = torch.stack(curve)
    assert torch.isfinite(curve).all()
    assert (curve[1:] <= curve[:-1]).all()


def test_meta_sgd_is_finite_at_10x_its_steps_with_adversarial_step_sizes():
    learner, b = meta_sgd(0.01, inner_steps=2), tasks(t=8)
    with torch.no_grad():
        for v in learner.step_sizes.values():
            v.normal_(0, 50, generator=torch.Generator().manual_seed(2))  # signs and sizes wild
    assert learner.eval_guard  # on by default for learned step sizes
    guarded = learner.evaluate(b)  # eval_inner_steps = 10 x inner_steps
    assert guarded.shape == (21, 8) and torch.isfinite(guarded).all()
    learner.eval_guard = False
    assert not torch.isfinite(learner.evaluate(b)[-1]).all()  # what the guard prevents


def test_guard_on_the_cigar_family_at_10x_the_training_steps():
    cfg = load_config("configs/cigar.yaml", ["algo.name=metasgd", "algo.eval_inner_steps=30"])
    family = build_family(cfg.task)
    learner = build_learner(cfg, family)
    with torch.no_grad():
        for v in learner.step_sizes.values():
            v.fill_(5.0)  # 50x the configured inner_lr
    g = torch.Generator().manual_seed(0)
    b = family.sample(20, shots=5, query=10, generator=g, split="test")
    curve = learner.evaluate(b)  # 10 x inner_steps (3)
    assert curve.shape == (31, 20) and torch.isfinite(curve).all()
    learner.eval_guard = False
    assert not torch.isfinite(learner.evaluate(b)).all()


def test_eval_guard_defaults_and_config_key():
    maml = load_config("configs/sinusoid.yaml", [])
    assert not build_learner(maml).eval_guard  # a fixed inner_lr: unguarded, numbers unchanged
    off = load_config("configs/sinusoid.yaml", ["algo.name=metasgd", "algo.eval_guard=false"])
    assert not build_learner(off).eval_guard
    with pytest.raises(ConfigError, match=r"algo\.eval_guard") as e:
        load_config("configs/sinusoid.yaml", ["algo.eval_guard=sometimes"])
    assert "\n" not in str(e.value)


def test_a_rejected_step_halves_the_scale_and_an_accepted_one_doubles_it_back_up_to_one():
    old, new = {"w": torch.zeros(3)}, {"w": torch.ones(3)}
    cases = [(1.0, 2.0, 0.5, 0.0, 0.25), (2.0, 1.0, 0.25, 1.0, 0.5), (2.0, 1.0, 0.75, 1.0, 1.0),
             (1.0, float("nan"), 1.0, 0.0, 0.5)]  # fmt: skip
    for before, after, scale, moved, expected in cases:
        kept, s = accept_if_lower(torch.tensor(before), torch.tensor(after), old, new,
                                  torch.tensor(scale))  # fmt: skip
        assert float(kept["w"][0]) == moved and float(s) == expected
