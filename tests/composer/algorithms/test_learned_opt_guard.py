"""The learned optimizer's evaluation guard with slack (non-monotone): a hand-written float64
per-task reference, and the guarded rule at 10x its training horizon."""

import pytest
import torch

from metacompose.algorithms.inner_loop import query_losses
from metacompose.algorithms.learned_inner_loop import adam_update, unroll
from metacompose.build import build_learner
from metacompose.config import ConfigError, load_config
from metacompose.models import mlp_graph
from metacompose.tasks import SinusoidFamily

B1, B2, EPS = 0.9, 0.999, 1e-8


def tasks(t=4, k=5, q=3, seed=3):
    g = torch.Generator().manual_seed(seed)
    return SinusoidFamily().sample(t, shots=k, query=q, generator=g).to("cpu", torch.float64)


def reference_guarded_adam(graph, b, *, lr, slack, steps):
    """Per task: Adam steps written out, a candidate kept iff its support loss is at most
    ``slack`` times the lowest support loss so far (then the scale doubles, up to 1), else the old
    parameters and moments with half the scale. Returns the support losses ``(steps + 1, T)`` and
    how many candidates were rejected and how many were kept although the loss rose."""
    names = [n for n, _ in graph.named_parameters()]
    curves, rejected, bumps = [], 0, 0
    for i in range(b.num_tasks):
        x, y = b.support_x[i], b.support_y[i]

        def loss(ps, x=x, y=y):
            return ((graph.apply_params(dict(zip(names, ps)), x) - y) ** 2).mean()

        def value(ps):
            return float(loss(ps).detach())

        p = [w.detach().clone().requires_grad_() for _, w in graph.named_parameters()]
        m = [torch.zeros_like(w) for w in p]
        v = [torch.zeros_like(w) for w in p]
        scale, best, curve = 1.0, float("inf"), [value(p)]
        for t in range(1, steps + 1):
            before = loss(p)
            g = torch.autograd.grad(before, p)
            best = min(best, float(before.detach()))
            m1 = [B1 * a + (1 - B1) * c for a, c in zip(m, g)]
            v1 = [B2 * a + (1 - B2) * c * c for a, c in zip(v, g)]
            cand = [w - scale * lr * (a / (1 - B1**t)) / torch.sqrt(c / (1 - B2**t) + EPS**2)
                    for w, a, c in zip(p, m1, v1)]  # fmt: skip
            after = value(cand)
            if after <= slack * best:
                bumps += after > float(before.detach())
                p = [w.detach().requires_grad_() for w in cand]
                m, v, scale = m1, v1, min(2 * scale, 1.0)
                best = min(best, after)
            else:
                rejected += 1
                scale *= 0.5
            curve.append(value(p))
        curves.append(curve)
    return torch.tensor(curves, dtype=torch.float64).T, rejected, bumps


def support_curve(graph, update, b, *, steps, slack, horizon=5, vectorize=True):
    fast = {k: v.detach().expand(b.num_tasks, *v.shape) for k, v in graph.named_parameters()}
    curve = [query_losses(graph, fast, {}, b.support_x, b.support_y, loss="mse")]
    with torch.no_grad():
        unroll(graph, update, fast, {}, b.support_x, b.support_y, steps=steps, horizon=horizon,
               loss="mse", guard=True, slack=slack, vectorize=vectorize,
               on_step=lambda s, f: curve.append(
                   query_losses(graph, f, {}, b.support_x, b.support_y, loss="mse")))  # fmt: skip
    return torch.stack(curve)


@pytest.mark.parametrize("vectorize", [True, False])
def test_slack_guard_matches_a_hand_written_float64_reference(vectorize):
    torch.manual_seed(0)
    graph = mlp_graph(in_features=1, hidden=[8, 8], out_features=1, activation="tanh").double()
    b = tasks()
    for slack in (1.0, 1.5):
        ref, rejected, bumps = reference_guarded_adam(graph, b, lr=0.3, slack=slack, steps=25)
        got = support_curve(graph, adam_update(0.3), b, steps=25, slack=slack, vectorize=vectorize)
        torch.testing.assert_close(got, ref, atol=1e-12, rtol=1e-10)
        assert rejected > 0  # the guard acted
        assert (bumps > 0) == (slack > 1)  # and with slack it let the loss rise, within bounds


def test_at_10x_the_training_horizon_the_guarded_rule_is_finite_and_non_increasing():
    """The shipped config's rule (trained on steps 1..warmup + horizon) over 10x that horizon:
    the support loss stays within ``guard_slack`` of its running minimum, that minimum never
    rises, and the loss at 10H is at most the loss at H; with slack 1 it never rises at all."""
    cfg = load_config("configs/sinusoid_learned_opt.yaml")
    learner = build_learner(cfg).double()
    h = learner.horizon + learner.warmup
    b = tasks(t=6, k=10, seed=11)
    for slack in (learner.guard_slack, 1.0):
        c = support_curve(learner.graph, learner.rule, b, steps=10 * h, slack=slack,
                          horizon=learner.horizon)  # fmt: skip
        low = torch.cummin(c, dim=0).values
        assert torch.isfinite(c).all()
        assert (c[1:] <= slack * low[:-1] * (1 + 1e-12)).all()
        assert (c[10 * h] <= c[h]).all()
        if slack == 1.0:
            assert (c[1:] <= c[:-1]).all()


def test_bad_guard_slack_and_out_gain_are_one_line_config_errors():
    for arg in ("algo.args.guard_slack=0.5", "algo.args.out_gain=0", "algo.args.out_gain=2"):
        with pytest.raises(ConfigError) as e:
            build_learner(load_config("configs/sinusoid_learned_opt.yaml", [arg]))
        assert "\n" not in str(e.value) and "algo.args" in str(e.value), str(e.value)
