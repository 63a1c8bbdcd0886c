"""The learned optimizer: meta-gradient vs a hand-unrolled float64 reference, bounded updates."""

import math

import pytest
import torch

from metacompose.algorithms.inner_loop import query_losses
from metacompose.algorithms.learned_inner_loop import GRAD_SCALE, adam_update, rprop_update, unroll
from metacompose.algorithms.learned_opt import LearnedUpdateRule
from metacompose.algorithms.learned_opt_builder import learned_opt_learner
from metacompose.algorithms.rule_curriculum import RandomNetworks
from metacompose.build import build_learner
from metacompose.config import ConfigError, load_config
from metacompose.models import mlp_graph
from metacompose.tasks import SinusoidFamily

B1, B2, EPS = 0.9, 0.999, 1e-8
UP, DOWN, S0, SMIN, SMAX = 1.2, 0.5, 0.01, 1e-6, 1.0  # iRprop-


def small_learner(**kw):
    torch.manual_seed(0)
    graph = mlp_graph(in_features=1, hidden=[5], out_features=1, activation="tanh")
    return learned_opt_learner(graph=graph, loss="mse", eval_inner_steps=4, hidden=6, **kw).double()


def tasks(t=3, k=4, q=3):
    g = torch.Generator().manual_seed(3)
    return SinusoidFamily().sample(t, shots=k, query=q, generator=g).to("cpu", torch.float64)


def reference_rule(rule, f, t, rule_kind):
    """The rule's forward written out with its weights (no nn.Module call)."""
    m, k = rule.mlp, rule.out_gain
    h = torch.tanh(f @ m[0].weight.T + m[0].bias)
    h = torch.tanh(h @ m[2].weight.T + m[2].bias)
    h = h @ m[4].weight.T + m[4].bias
    # g / root, m_hat / root, c g, Rprop's s sign
    grads = torch.stack([f[..., 0], f[..., 1], f[..., 7], f[..., 8]], -1)
    w = torch.sigmoid(k * (h[..., 2] + f @ rule.switch.weight[0] + rule.switch.bias[0]))
    # near: the starting rule's features only (sgd: c g; adam: g / root, m_hat / root)
    mask = [0.0, 0.0, 1.0, 0.0] if rule_kind == "sgd" else [1.0, 1.0, 0.0, 0.0]
    near_w = rule.near.weight[0] * torch.tensor(mask, dtype=f.dtype)
    mixed = (1 - w) * (grads @ near_w) + w * (grads @ rule.far.weight[0])
    direction = k * mixed * torch.exp(k * h[..., 0])
    gate = torch.sigmoid(k * (h[..., 1] + f @ rule.gate.weight[0] + rule.gate.bias[0]))
    alpha = torch.log1p(torch.exp(rule.decay))
    step = rule.max_step * torch.sigmoid(rule.scale) * (1 + t / torch.exp(rule.log_tau)) ** -alpha
    return -step * torch.tanh(direction) * gate


def reference_objective(learner, b, truncation, rule_kind):
    """Per-task Python loop, torch.autograd.grad(create_graph=True), features written out."""
    total = 0.0
    names = [n for n, _ in learner.graph.named_parameters()]
    for i in range(b.num_tasks):
        p = [w for _, w in learner.graph.named_parameters()]
        m = [torch.zeros_like(w) for w in p]
        v = [torch.zeros_like(w) for w in p]
        s = [torch.full_like(w, S0) for w in p]  # Rprop's step sizes
        last = [torch.zeros_like(w) for w in p]  # the gradient sign it last stepped along

        def loss(ps, x, y):
            return ((learner.graph.apply_params(dict(zip(names, ps)), x) - y) ** 2).mean()

        for t in range(1, learner.horizon + 1):
            before = loss(p, b.support_x[i], b.support_y[i])
            grads = torch.autograd.grad(before, p, create_graph=True)
            # progress: mean log loss ratio per step over the first 3 steps, -3 before them
            if t == 1:
                first, progress = before, torch.tensor(-3.0, dtype=before.dtype)
            elif t <= 4:
                progress = torch.clamp(torch.log((before + EPS) / (first + EPS)) / (t - 1), min=-3)
            new_p = []
            for j, (w, g) in enumerate(zip(p, grads)):
                m[j] = B1 * m[j] + (1 - B1) * g
                v[j] = B2 * v[j] + (1 - B2) * g * g
                root = torch.sqrt(v[j] / (1 - B2**t) + EPS**2)
                # iRprop-, element by element in Python: grow on the same sign, shrink and skip
                # the step on a flip
                s_new, sign = s[j].clone(), torch.zeros_like(w).detach()
                for e, ge in enumerate(g.detach().reshape(-1).tolist()):
                    agree = ge * float(last[j].reshape(-1)[e])
                    se = float(s[j].reshape(-1)[e])
                    if agree > 0:
                        s_new.view(-1)[e] = min(se * UP, SMAX)
                    elif agree < 0:
                        s_new.view(-1)[e] = max(se * DOWN, SMIN)
                    sign.view(-1)[e] = 0.0 if agree < 0 else (ge > 0) - (ge < 0)
                s[j], last[j] = s_new, sign
                f = torch.stack([g / root, m[j] / (1 - B1**t) / root, w,
                                 torch.log(g.abs() + EPS) / 10, torch.log(w.abs() + EPS) / 10,
                                 torch.full_like(w, min(t / learner.horizon, 1.0)),
                                 progress.expand_as(w), GRAD_SCALE * g, s[j] * sign],
                                -1)  # fmt: skip
                new_p.append(w + reference_rule(learner.rule, f, t, rule_kind))
            p = new_p
            if truncation and t % truncation == 0 and t < learner.horizon:
                p = [w.detach().requires_grad_() for w in p]
                m, v = [a.detach() for a in m], [a.detach() for a in v]
                first, progress = first.detach(), progress.detach()
            total = total + loss(p, b.query_x[i], b.query_y[i])
    return total / (learner.horizon * b.num_tasks)


@pytest.mark.parametrize(
    "out_gain,far_rule,init_rule", [(1.0, "adam", "adam"), (0.1, "adam", "adam"),
                                    (0.1, "rprop", "sgd")]
)  # fmt: skip
def test_meta_gradient_matches_a_hand_unrolled_float64_reference(out_gain, far_rule, init_rule):
    for truncation in (None, 2):
        learner = small_learner(horizon=5, truncation=truncation, out_gain=out_gain, far_lr=0.005,
                                far_rule=far_rule, init_rule=init_rule, max_step=2.5)  # fmt: skip
        b = tasks()
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():  # off the initial rule, so that every path carries a gradient
            for p in learner.rule.mlp.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        params = [p for p in learner.parameters() if p.requires_grad]
        fast = torch.autograd.grad(learner.meta_step(b).objective, params)
        ref = torch.autograd.grad(reference_objective(learner, b, truncation, init_rule), params)
        for a, r in zip(fast, ref):
            torch.testing.assert_close(a, r, atol=1e-10, rtol=1e-10)


def test_updates_are_bounded_by_max_step_at_any_horizon():
    rule = LearnedUpdateRule(hidden=8, max_step=0.05, init_lr=0.01).double()
    with torch.no_grad():
        for p in rule.parameters():
            p.normal_(0, 10)  # an adversarial rule
    f = torch.randn(1000, 9, dtype=torch.float64) * 1e3
    assert rule(f).abs().max() <= 0.05
    learner = small_learner(max_step=0.05)
    learner.rule = rule
    out = learner.evaluate(tasks(), steps=300)  # 75x the training horizon
    assert torch.isfinite(out).all()


def test_an_element_without_gradient_or_momentum_does_not_move():
    """No learned drift: whatever the rule's weights, the update is zero where the gradient
    features (g / root, m_hat / root, GRAD_SCALE * g, Rprop's s * sign) are, and not elsewhere."""
    rule = LearnedUpdateRule(
        hidden=8, max_step=0.5, init_lr=0.01, out_gain=0.3, far_lr=0.1
    ).double()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in rule.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    f = torch.randn(200, 9, generator=g, dtype=torch.float64)
    f[:100, [0, 1, 7, 8]] = 0.0
    out = rule(f, t=50)
    assert (out[:100] == 0).all() and (out[100:] != 0).all()


def test_initial_rule_is_squashed_adam():
    rule = LearnedUpdateRule(hidden=4, max_step=0.1, init_lr=0.01).double()
    f = torch.randn(50, 9, dtype=torch.float64)
    # the scale was stored in float32 before .double(): agreement to float32 rounding
    for t in (1, 7, 1000):
        decay = (1 + t / 10) ** -0.05  # the initial decay
        torch.testing.assert_close(rule(f, t=t), -0.01 * decay * torch.tanh(f[:, 1]), atol=1e-9,
                                   rtol=1e-6)  # fmt: skip


@pytest.mark.parametrize("out_gain", [1.0, 0.1])
def test_initial_sgd_rule_is_sgd_for_small_gradients(out_gain):
    rule = LearnedUpdateRule(hidden=4, max_step=2.5, init_lr=0.01, init_rule="sgd",
                             out_gain=out_gain).double()  # fmt: skip
    f = torch.randn(50, 9, dtype=torch.float64) * 1e-5  # feature 7 is GRAD_SCALE * g
    decay = (1 + 3 / 10) ** -0.05
    torch.testing.assert_close(rule(f, t=3), -0.01 * decay * f[:, 7] / GRAD_SCALE, atol=1e-9,
                               rtol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="init_lr"):
        LearnedUpdateRule(max_step=0.5, init_lr=0.01, init_rule="sgd")


def test_initial_far_rule_is_sgd_after_fast_progress_and_adam_after_slow():
    """far_lr: SGD where the first steps cut the loss fast (progress <= -1.3: a meta-learned
    init, and before the first step), Adam with step far_lr where they did not (random init)."""
    rule = LearnedUpdateRule(hidden=4, max_step=2.5, init_lr=0.01, init_rule="sgd", out_gain=0.1,
                             far_lr=0.03).double()  # fmt: skip
    f = torch.randn(50, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 1e-3
    decay = (1 + 3 / 10) ** -0.05
    for progress, sgd_share in ((-3.0, 1.0), (-1.3, 1.0), (-0.1, 0.0), (0.0, 0.0)):
        f[:, 6] = progress
        w = 1 / (1 + math.exp(-10 * (progress + 0.65)))  # the initial switch, written out
        assert abs(w - (1 - sgd_share)) < 2e-2
        want = -decay * torch.tanh((1 - w) * f[:, 7] + w * 0.03 * f[:, 1])
        torch.testing.assert_close(rule(f, t=3), want, atol=1e-9, rtol=1e-5)


def test_initial_far_rprop_rule_is_rprop_after_slow_progress():
    """far_rule rprop: where the first steps made little progress the initial rule is Rprop's
    step (feature 8) times far_lr / 0.01 under the squashing; after fast progress it is SGD."""
    rule = LearnedUpdateRule(hidden=4, max_step=2.5, init_lr=0.01, init_rule="sgd", out_gain=0.03,
                             far_lr=0.03, far_rule="rprop").double()  # fmt: skip
    f = torch.randn(50, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(6)) * 1e-2
    decay = (1 + 3 / 10) ** -0.05
    for progress, want_rprop in ((-3.0, False), (0.0, True)):
        f[:, 6] = progress
        w = 1 / (1 + math.exp(-10 * (progress + 0.65)))
        want = -decay * torch.tanh((1 - w) * f[:, 7] + w * (0.03 / 0.01) * f[:, 8])
        torch.testing.assert_close(rule(f, t=3), want, atol=1e-9, rtol=1e-5)
        assert (w > 0.99) == want_rprop and (w < 0.01) != want_rprop


def reference_rprop(graph, b, steps):
    """iRprop- written out per task, per element, in float64: the support-loss curve."""
    names = [n for n, _ in graph.named_parameters()]
    curves = []
    for i in range(b.num_tasks):
        p = [w.detach().clone() for _, w in graph.named_parameters()]
        s = [[S0] * w.numel() for w in p]
        last = [[0.0] * w.numel() for w in p]
        curve = []
        for _ in range(steps + 1):
            ps = [w.clone().requires_grad_() for w in p]
            loss = ((graph.apply_params(dict(zip(names, ps)), b.support_x[i]) - b.support_y[i])
                    ** 2).mean()  # fmt: skip
            curve.append(float(loss.detach()))
            grads = torch.autograd.grad(loss, ps)
            for j, g in enumerate(grads):
                flat = p[j].view(-1)
                for e, ge in enumerate(g.reshape(-1).tolist()):
                    agree = ge * last[j][e]
                    if agree > 0:
                        s[j][e] = min(s[j][e] * UP, SMAX)
                    elif agree < 0:
                        s[j][e] = max(s[j][e] * DOWN, SMIN)
                    sign = 0.0 if agree < 0 else float((ge > 0) - (ge < 0))
                    flat[e] -= s[j][e] * sign
                    last[j][e] = sign
        curves.append(curve)
    return torch.tensor(curves, dtype=torch.float64).T


@pytest.mark.parametrize("vectorize", [True, False])
def test_rprop_update_matches_a_hand_written_float64_irprop(vectorize):
    learner, b = small_learner(), tasks()
    fast, frozen = learner.split_params()
    fast = {k: v.detach().expand(b.num_tasks, *v.shape) for k, v in fast.items()}
    curve = [query_losses(learner.graph, fast, {}, b.support_x, b.support_y, loss="mse")]
    with torch.no_grad():
        unroll(learner.graph, rprop_update(), fast, frozen, b.support_x, b.support_y, steps=12,
               horizon=5, loss="mse", vectorize=vectorize, on_step=lambda s, f: curve.append(
                   query_losses(learner.graph, f, {}, b.support_x, b.support_y, loss="mse")))  # fmt: skip
    ref = reference_rprop(learner.graph, b, 12)
    torch.testing.assert_close(torch.stack(curve), ref, atol=1e-12, rtol=1e-10)
    assert (ref[12] < ref[0]).all()


def test_vmapped_unroll_matches_the_per_task_loop():
    learner, b = small_learner(), tasks()
    fast, frozen = learner.split_params()
    fast = {k: v.detach().expand(b.num_tasks, *v.shape) for k, v in fast.items()}
    for update in (learner.rule, adam_update(0.01)):
        a, _ = unroll(learner.graph, update, fast, frozen, b.support_x, b.support_y, steps=3,
                      horizon=5, loss="mse")  # fmt: skip
        r, _ = unroll(learner.graph, update, fast, frozen, b.support_x, b.support_y, steps=3,
                      horizon=5, loss="mse", vectorize=False)  # fmt: skip
        for k in a:
            torch.testing.assert_close(a[k], r[k], atol=1e-12, rtol=1e-12)


def test_export_tasks_gives_before_and_after_weights_of_the_graph():
    learner, b = small_learner(), tasks()
    ex = learner.export_tasks(b, steps=3)
    assert len(ex) == b.num_tasks and ex[0].graph is learner.graph
    moved = sum((ex[0].adapted[k] - ex[0].meta[k]).abs().sum() for k in ex[0].meta)
    assert moved > 0


def guarded_support_curve(learner, b, update, steps):
    fast, frozen = learner.split_params()
    fast = {k: v.detach().expand(b.num_tasks, *v.shape) for k, v in fast.items()}
    curve = [query_losses(learner.graph, fast, {}, b.support_x, b.support_y, loss="mse")]
    with torch.no_grad():
        out, _ = unroll(learner.graph, update, fast, frozen, b.support_x, b.support_y, steps=steps,
                        horizon=5, loss="mse", guard=True, on_step=lambda s, f: curve.append(
                            query_losses(learner.graph, f, {}, b.support_x, b.support_y, loss="mse")))  # fmt: skip
    return out, torch.stack(curve)


@pytest.mark.parametrize("vectorize", [True, False])
def test_guarded_unroll_equals_the_unguarded_one_when_every_step_is_accepted(vectorize):
    learner, b = small_learner(), tasks()
    fast, frozen = learner.split_params()
    fast = {k: v.detach().expand(b.num_tasks, *v.shape) for k, v in fast.items()}
    for update in (learner.rule, adam_update(1e-3)):
        args = (learner.graph, update, fast, frozen, b.support_x, b.support_y)
        with torch.no_grad():
            plain, _ = unroll(*args, steps=6, horizon=5, loss="mse")
            guarded, _ = unroll(*args, steps=6, horizon=5, loss="mse", guard=True,
                                vectorize=vectorize)  # fmt: skip
        _, curve = guarded_support_curve(learner, b, update, 6)
        assert (curve[1:] < curve[:-1]).all()  # every step accepted
        for k in plain:
            torch.testing.assert_close(guarded[k], plain[k], atol=1e-12, rtol=1e-12)


def test_guard_keeps_an_adversarial_rule_finite_and_the_support_loss_non_increasing():
    learner, b = small_learner(max_step=5.0, init_lr=1.0), tasks(t=6)
    with torch.no_grad():
        for p in learner.rule.parameters():
            p.normal_(0, 3, generator=torch.Generator().manual_seed(4))
    _, curve = guarded_support_curve(learner, b, learner.rule, 50)  # 10x the horizon
    assert torch.isfinite(curve).all() and (curve[1:] <= curve[:-1]).all()
    assert learner.guard and torch.isfinite(learner.evaluate(b, steps=50)).all()


def test_random_networks_are_seeded_and_train_the_rule():
    nets = RandomNetworks(prob=1.0, widths=(3, 7), activations=("relu", "gelu"), depth=2,
                          in_features=1, out_features=1)  # fmt: skip
    (_, p1), (_, p2) = nets.draw(5), nets.draw(5)
    assert all(torch.equal(p1[k], p2[k]) for k in p1)
    assert {tuple(nets.draw(s)[1]["body.layers.0.weight"].shape) for s in range(20)} == {
        (3, 1),
        (7, 1),
    }
    assert RandomNetworks(prob=0.0, widths=(3,), activations=("relu",), depth=1, in_features=1,
                          out_features=1).draw(0) is None  # fmt: skip
    with pytest.raises(ValueError, match="random_net_prob"):
        RandomNetworks(prob=1.5, widths=(3,), activations=("relu",), depth=1, in_features=1,
                       out_features=1)  # fmt: skip
    learner = small_learner(random_net_prob=1.0, random_net_widths=[4], horizon=3)
    step = learner.meta_step(tasks(), step=1)
    grads = torch.autograd.grad(step.objective, list(learner.rule.parameters()))
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    graph_grads = [p.grad for p in learner.graph.parameters()]
    assert all(g is None for g in graph_grads)  # a drawn network leaves the init untouched


def test_a_random_network_trains_the_rule_on_its_support_loss():
    """On a drawn network the objective is the support loss after the step over the one before
    (one step, written out with ``unroll``), not the query loss."""
    learner, b = small_learner(random_net_prob=1.0, random_net_widths=[4], horizon=1), tasks()
    graph, init = learner.networks.draw(1, b.support_x)
    fast = {k: v.expand(b.num_tasks, *v.shape) for k, v in init.items()}
    after, _ = unroll(graph, learner.rule, fast, {}, b.support_x, b.support_y, steps=1,
                      horizon=1, loss="mse")  # fmt: skip
    want = (query_losses(graph, after, {}, b.support_x, b.support_y, loss="mse").mean()
            / query_losses(graph, fast, {}, b.support_x, b.support_y, loss="mse").mean())  # fmt: skip
    torch.testing.assert_close(learner.meta_step(b, step=1).objective, want, atol=1e-12, rtol=0)


def test_bad_learned_opt_arguments_are_one_line_config_errors():
    for arg in ("algo.args.random_net_prob=1.5", "algo.args.guard=maybe", "algo.args.far_lr=5",
                "algo.args.far_lr=-0.1", "algo.args.far_rule=lion", "algo.args.random_net_pool=-1",
                "algo.args.random_net_unroll=0"):  # fmt: skip
        with pytest.raises(ConfigError) as e:
            build_learner(load_config("configs/sinusoid_learned_opt.yaml", [arg]))
        assert "\n" not in str(e.value) and "algo.args" in str(e.value)


def test_the_pool_carries_each_random_network_adaptation_across_meta_iterations():
    """random_net_pool: meta-iteration 0 takes steps 1..3 of a fresh network, meta-iteration 1
    (the same slot) steps 4..6 of the same adaptation (its objective: the window's mean support
    loss over the loss at the window's start, as one 6-step unroll gives it), meta-iteration 2 a
    fresh network again (the adaptation has taken random_net_unroll = 6 steps)."""
    learner = small_learner(random_net_prob=1.0, random_net_widths=[4], horizon=3, truncation=None,
                            random_net_pool=1, random_net_unroll=6, far_lr=0.005,
                            far_rule="rprop")  # fmt: skip
    b = tasks()
    graph, init = learner.networks.draw(0, b.support_x)
    fast = {k: v.expand(b.num_tasks, *v.shape) for k, v in init.items()}
    curve = [query_losses(graph, fast, {}, b.support_x, b.support_y, loss="mse").mean()]
    with torch.no_grad():
        unroll(graph, learner.rule, fast, {}, b.support_x, b.support_y, steps=6, horizon=3,
               loss="mse", on_step=lambda s, f: curve.append(
                   query_losses(graph, f, {}, b.support_x, b.support_y, loss="mse").mean()))  # fmt: skip
    curve = torch.stack(curve)
    for step, window in ((0, slice(1, 4)), (1, slice(4, 7))):
        got = learner.meta_step(b, step=step).objective
        want = curve[window].mean() / curve[window.start - 1]
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
        grads = torch.autograd.grad(got, list(learner.rule.parameters()), allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert learner.pool.slots[0].steps == 6
    learner.meta_step(b, step=2)
    assert learner.pool.slots[0].steps == 3  # a fresh network (step 2's draw)
    assert learner.pool.slots[0].graph is not graph
