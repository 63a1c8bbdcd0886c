"""Inner loops with optimizer state: a learned update rule, Adam or SGD, vectorised over tasks.

Same conventions as :mod:`metacompose.algorithms.inner_loop` (explicit parameter dicts, ``fast``
with a leading task dimension, ``frozen`` shared), plus per-parameter running moments. An update
rule is a function ``rule(features) -> update`` of the per-element features of
:func:`features`; :func:`adam_update` and :func:`sgd_update` are the hand-designed references.
The meta-gradient flows through the unroll (second order through ``torch.func.grad``) except at
truncation points, where the state is detached (truncated backpropagation through the unroll).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import grad, vmap

from metacompose.algorithms.inner_loop import FunctionalModel, Params
from metacompose.algorithms.losses import task_loss

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
NUM_FEATURES = 6
# One element's update from its features (..., NUM_FEATURES) -> (...,); the features are those of
# ``features``; ``param``/``grad`` are passed too for the hand-designed rules.
UpdateFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class OptState:
    """Running first and second moments of the gradient (per task, per element) and the step."""

    m: Params
    v: Params
    t: int = 0

    @staticmethod
    def zeros(fast: Params) -> OptState:
        return OptState({k: torch.zeros_like(p) for k, p in fast.items()},
                        {k: torch.zeros_like(p) for k, p in fast.items()})  # fmt: skip

    def detach(self) -> OptState:
        return OptState({k: v.detach() for k, v in self.m.items()},
                        {k: v.detach() for k, v in self.v.items()}, self.t)  # fmt: skip


def features(g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, p: torch.Tensor, *, t: int,
             horizon: int) -> torch.Tensor:  # fmt: skip
    """``(..., 6)`` per-element inputs of a learned rule at step ``t`` (1-based).

    Gradient and bias-corrected momentum, each over the root of the bias-corrected second moment
    (Adam's scale-free direction); the parameter value; log-magnitudes of the gradient and the
    parameter (/ 10); and the step fraction ``min(t / horizon, 1)``: constant past the horizon,
    so every step beyond it looks like the steps the rule was trained on there.
    """
    m_hat = m / (1 - BETA1**t)
    root = torch.sqrt(v / (1 - BETA2**t) + EPS**2)  # eps inside: a finite gradient at v = 0
    frac = torch.full_like(p, min(t / horizon, 1.0))
    return torch.stack(
        [g / root, m_hat / root, p, torch.log(g.abs() + EPS) / 10, torch.log(p.abs() + EPS) / 10,
         frac], dim=-1,
    )  # fmt: skip


def adam_update(lr: float) -> UpdateFn:
    """Adam (bias-corrected) as an update rule: ``-lr * m_hat / (sqrt(v_hat) + eps)``."""
    return lambda f, g, p, v: -lr * f[..., 1]


def sgd_update(lr: float) -> UpdateFn:
    """Plain SGD as an update rule: ``-lr * g``."""
    return lambda f, g, p, v: -lr * g


def rule_step(
    graph: FunctionalModel,
    update: UpdateFn,
    fast: Params,
    frozen: Params,
    m: Params,
    v: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    t: int,
    horizon: int,
    loss: str,
) -> tuple[Params, Params, Params]:
    """One inner step on ONE task: new ``(fast, m, v)`` after gradient step ``t`` (1-based).

    Every adapted tensor is flattened into one vector, so the rule runs once per step."""

    def support_loss(f: Params) -> torch.Tensor:
        return task_loss(graph.apply_params({**frozen, **f}, x), y, loss)

    grads = grad(support_loss)(fast)
    keys = list(fast)
    flat = [torch.cat([d[k].reshape(-1) for k in keys]) for d in (fast, grads, m, v)]
    p, g, m1, v1 = flat
    m1 = BETA1 * m1 + (1 - BETA1) * g
    v1 = BETA2 * v1 + (1 - BETA2) * g * g
    p1 = p + update(features(g, m1, v1, p, t=t, horizon=horizon), g, p, v1)
    sizes = [fast[k].numel() for k in keys]
    new_f, new_m, new_v = (
        {k: part.view(fast[k].shape) for k, part in zip(keys, vec.split(sizes))}
        for vec in (p1, m1, v1)
    )
    return new_f, new_m, new_v


def unroll(
    graph: FunctionalModel,
    update: UpdateFn,
    fast: Params,
    frozen: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    horizon: int,
    loss: str,
    state: OptState | None = None,
    truncation: int | None = None,
    vectorize: bool = True,
    on_step: Callable[[int, Params], None] | None = None,
) -> tuple[Params, OptState]:
    """Adapt every task of a meta-batch for ``steps`` steps of ``update``.

    Args:
        fast: adapted parameters WITH a leading task dimension ``T``.
        x: ``(T, K, *in_shape)``; y: ``(T, K, ...)``.
        horizon: the rule's training horizon (scales the step-fraction feature).
        state: optimizer state to continue from (default: zero moments, step 0).
        truncation: detach parameters and state every this many steps (``None``: never), so the
            meta-gradient flows through unrolls of at most this length.
        vectorize: ``vmap`` over tasks (else a per-task Python loop: the reference path).
        on_step: ``on_step(s, fast)`` after each step ``s = 1..steps``.

    Returns:
        ``(fast, state)`` after the last step.
    """
    state = OptState.zeros(fast) if state is None else state
    m, v, t0 = state.m, state.v, state.t
    for s in range(1, steps + 1):
        t = t0 + s

        def one(f, mm, vv, xt, yt, t=t):
            return rule_step(graph, update, f, frozen, mm, vv, xt, yt, t=t, horizon=horizon,
                             loss=loss)  # fmt: skip

        if vectorize:
            fast, m, v = vmap(one)(fast, m, v, x, y)
        else:
            outs = [one(*({k: d[k][i] for k in d} for d in (fast, m, v)), x[i], y[i])
                    for i in range(x.shape[0])]  # fmt: skip
            fast, m, v = ({k: torch.stack([o[j][k] for o in outs]) for k in fast} for j in range(3))
        if truncation is not None and s % truncation == 0 and s < steps:
            fast = {k: p.detach() for k, p in fast.items()}
            m, v = OptState(m, v).detach().m, OptState(m, v).detach().v
        if on_step is not None:
            on_step(s, fast)
    return fast, OptState(m, v, t0 + steps)
