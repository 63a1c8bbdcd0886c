"""Inner loops with optimizer state: a learned update rule, Adam, SGD or Rprop, vectorised over tasks.

Same conventions as :mod:`metacompose.algorithms.inner_loop` (explicit parameter dicts, ``fast``
with a leading task dimension, ``frozen`` shared), plus per-parameter running moments and Rprop
step sizes (:func:`rprop_state`). An update rule is a function ``rule(features) -> update`` of the
per-element features of :func:`features`; :func:`adam_update`, :func:`sgd_update` and
:func:`rprop_update` are the hand-designed references.
The meta-gradient flows through the unroll (second order through ``torch.func.grad``) except at
truncation points, where the state is detached (truncated backpropagation through the unroll).
At evaluation ``unroll(guard=True)`` keeps a step only if it does not raise the task's support
loss, else that task's update scale halves (:mod:`metacompose.algorithms.guarded`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import grad_and_value, vmap

from metacompose.algorithms.guarded import accept_if_lower
from metacompose.algorithms.inner_loop import FunctionalModel, Params
from metacompose.algorithms.losses import task_loss

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
NUM_FEATURES = 9
RPROP = 8  # the Rprop-step feature (the last)
GRAD_SCALE = 0.01  # the raw-gradient feature is GRAD_SCALE * g
# Rprop (Riedmiller and Braun 1993, the iRprop- variant): a per-element step size that grows by
# RPROP_UP while the gradient keeps its sign and shrinks by RPROP_DOWN when it flips (that step is
# skipped), within [RPROP_MIN, RPROP_MAX], from RPROP_START. On the full-batch few-shot support
# sets of the inner loop it reaches tuned Adam's 100-step loss from a random init in ~50 steps.
RPROP_UP, RPROP_DOWN = 1.2, 0.5
RPROP_START, RPROP_MIN, RPROP_MAX = 0.01, 1e-6, 1.0
# The per-task progress feature: the mean log support-loss ratio per step over the first
# PROGRESS_STEPS steps, log(L_s / L_0) / s (s = min(t - 1, PROGRESS_STEPS)), then held; it is
# PREPARED (also its floor) before the first step. Near -2 from a meta-learned init shaped for
# gradient steps (one step cuts the loss ~10x), near -0.1 from a random init (sinusoid, measured).
PROGRESS_STEPS, PREPARED = 3, -3.0
# One element's update ``update(features, grad, param, v, t) -> (...,)`` from its features
# (..., NUM_FEATURES) of ``features``; ``grad``/``param``/``v`` for the hand-designed rules, the
# 1-based step ``t`` for a learned rule's decay (beyond the horizon the step fraction saturates).
UpdateFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


@dataclass
class OptState:
    """Running first and second moments of the gradient (per task, per element), Rprop's step
    sizes ``s`` and the sign ``sign`` of the gradient it last stepped along (:func:`rprop_state`),
    the step, each task's support loss before its first step and progress feature
    (:data:`PROGRESS_STEPS`), and (guarded unrolls) each task's update scale and lowest support
    loss so far, so a continued unroll resumes all of them."""

    m: Params
    v: Params
    s: Params
    sign: Params
    t: int = 0
    first: torch.Tensor | None = None
    progress: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    best: torch.Tensor | None = None

    @staticmethod
    def zeros(fast: Params) -> OptState:
        t = next(iter(fast.values()))
        zeros = lambda: {k: torch.zeros_like(p) for k, p in fast.items()}  # noqa: E731
        return OptState(zeros(), zeros(), {k: torch.full_like(p, RPROP_START) for k, p in
                                           fast.items()}, zeros(),
                        0, t.new_ones(t.shape[0]), t.new_full((t.shape[0],), PREPARED))  # fmt: skip

    def detach(self) -> OptState:
        per_task = (self.first, self.progress, self.scale, self.best)
        return OptState(*({k: v.detach() for k, v in d.items()} for d in (self.m, self.v, self.s,
                                                                           self.sign)),
                        self.t, *(None if a is None else a.detach() for a in per_task))  # fmt: skip


def rprop_state(g: torch.Tensor, s: torch.Tensor, sign: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """iRprop- for one flat vector: ``(step sizes, sign stepped along)`` after gradient ``g``,
    from the previous ``(s, sign)``; the Rprop update is ``-s_new * sign_new`` (zero where the
    gradient is zero or has just flipped sign)."""
    agree = g * sign
    s = torch.where(agree > 0, (s * RPROP_UP).clamp(max=RPROP_MAX),
                    torch.where(agree < 0, (s * RPROP_DOWN).clamp(min=RPROP_MIN), s))  # fmt: skip
    return s, torch.where(agree < 0, torch.zeros_like(g), torch.sign(g))


def progress_feature(loss: torch.Tensor, first: torch.Tensor, progress: torch.Tensor, *,
                     t: int) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``(first, progress)`` at step ``t`` (1-based) of ONE task from its support loss before the
    step: ``first`` is set at ``t = 1``; ``progress`` is ``log(loss / first) / (t - 1)`` (floored
    at PREPARED) for ``2 <= t <= PROGRESS_STEPS + 1``, held after, PREPARED at ``t = 1``."""
    if t == 1:
        return loss, torch.full_like(progress, PREPARED)
    if t - 1 > PROGRESS_STEPS:
        return first, progress
    return first, (torch.log((loss + EPS) / (first + EPS)) / (t - 1)).clamp(min=PREPARED)


def features(g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, p: torch.Tensor, *, t: int,
             horizon: int, progress: torch.Tensor, rprop: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """``(..., 9)`` per-element inputs of a learned rule at step ``t`` (1-based).

    Gradient and bias-corrected momentum, each over the root of the bias-corrected second moment
    (Adam's scale-free direction); the parameter value; log-magnitudes of the gradient and the
    parameter (/ 10); the step fraction ``min(t / horizon, 1)``: constant past the horizon,
    so every step beyond it looks like the steps the rule was trained on there; the task's
    ``progress`` (0-dim, :func:`progress_feature`: how far the first steps took the loss, which
    tells a start prepared for gradient steps from one far from any solution); and the raw
    gradient times ``GRAD_SCALE`` (SGD's direction: a meta-learned init is shaped for it); and
    ``rprop``, Rprop's step ``s * sign`` (:func:`rprop_state`; zero where the gradient is).
    """
    m_hat = m / (1 - BETA1**t)
    root = torch.sqrt(v / (1 - BETA2**t) + EPS**2)  # eps inside: a finite gradient at v = 0
    frac = torch.full_like(p, min(t / horizon, 1.0))
    return torch.stack(
        [g / root, m_hat / root, p, torch.log(g.abs() + EPS) / 10, torch.log(p.abs() + EPS) / 10,
         frac, progress.expand_as(p), GRAD_SCALE * g, rprop], dim=-1,
    )  # fmt: skip


def adam_update(lr: float) -> UpdateFn:
    """Adam (bias-corrected) as an update rule: ``-lr * m_hat / (sqrt(v_hat) + eps)``."""
    return lambda f, g, p, v, t: -lr * f[..., 1]


def sgd_update(lr: float) -> UpdateFn:
    """Plain SGD as an update rule: ``-lr * g``."""
    return lambda f, g, p, v, t: -lr * g


def rprop_update() -> UpdateFn:
    """iRprop- as an update rule (:data:`RPROP_UP` ...): ``-s * sign``."""
    return lambda f, g, p, v, t: -f[..., RPROP]


def rule_step(
    graph: FunctionalModel,
    update: UpdateFn,
    fast: Params,
    frozen: Params,
    moments: tuple[Params, Params, Params, Params],
    first: torch.Tensor,
    progress: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    t: int,
    horizon: int,
    loss: str,
    scale: torch.Tensor | None = None,
    best: torch.Tensor | None = None,
    slack: float = 1.0,
) -> tuple[Params, tuple[Params, ...], torch.Tensor, torch.Tensor, torch.Tensor | None,
           torch.Tensor | None]:  # fmt: skip
    """One inner step on ONE task: new ``(fast, moments, first, progress, scale, best)`` after
    gradient step ``t`` (1-based); ``moments``: ``(m, v, s, sign)`` of :class:`OptState`;
    ``first``, ``progress``: 0-dim (:func:`progress_feature`).

    Every adapted tensor is flattened into one vector, so the rule runs once per step.
    ``scale`` (0-dim, evaluation only): guarded step ``p + scale * update``, kept (with its new
    moments) only if its support loss is at most ``slack`` times ``best``, the lowest support loss
    of this task so far (0-dim, ``inf`` at the start), else the old ``(p, m, v)`` and half the
    scale. ``slack = 1``: the support loss never rises; ``slack > 1``: a non-monotone guard that
    lets momentum through a bump but never past ``slack`` times the best loss."""

    def support_loss(f: Params) -> torch.Tensor:
        return task_loss(graph.apply_params({**frozen, **f}, x), y, loss)

    grads, before = grad_and_value(support_loss)(fast)
    first, progress = progress_feature(before, first, progress, t=t)
    keys = list(fast)
    flat = lambda d: torch.cat([d[k].reshape(-1) for k in keys])  # noqa: E731
    p, g = flat(fast), flat(grads)
    old = {"p": p, **{n: flat(d) for n, d in zip(("m", "v", "s", "sign"), moments)}}
    m1 = BETA1 * old["m"] + (1 - BETA1) * g
    v1 = BETA2 * old["v"] + (1 - BETA2) * g * g
    s1, sign1 = rprop_state(g, old["s"], old["sign"])
    feats = features(g, m1, v1, p, t=t, horizon=horizon, progress=progress, rprop=s1 * sign1)
    delta = update(feats, g, p, v1, t)
    sizes = [fast[k].numel() for k in keys]

    def split(vec: torch.Tensor) -> Params:
        return {k: part.view(fast[k].shape) for k, part in zip(keys, vec.split(sizes))}

    new = {"p": p + (delta if scale is None else scale * delta), "m": m1, "v": v1, "s": s1,
           "sign": sign1}  # fmt: skip
    if scale is not None:
        best = torch.minimum(best, before)
        after = support_loss(split(new["p"]))
        new, scale = accept_if_lower(slack * best, after, old, new, scale)
        best = torch.where(after <= best, after, best)
    out = tuple(split(new[n]) for n in ("m", "v", "s", "sign"))
    return split(new["p"]), out, first, progress, scale, best


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
    guard: bool = False,
    slack: float = 1.0,
) -> tuple[Params, OptState]:
    """Adapt every task of a meta-batch for ``steps`` steps of ``update``.

    Args:
        fast: adapted parameters WITH a leading task dimension ``T``.
        x: ``(T, K, *in_shape)``; y: ``(T, K, ...)``.
        horizon: the rule's training horizon (scales the step-fraction feature).
        state: optimizer state to continue from (default: zero moments, step 0, scale 1).
        truncation: detach parameters and state every this many steps (``None``: never), so the
            meta-gradient flows through unrolls of at most this length.
        vectorize: ``vmap`` over tasks (else a per-task Python loop: the reference path).
        on_step: ``on_step(s, fast)`` after each step ``s = 1..steps``.
        guard: keep a task's step only if its support loss does not rise (above ``slack`` times
            its lowest support loss so far), else halve that task's update scale (evaluation: no
            meta-gradient through the accept/reject decision).

    Returns:
        ``(fast, state)`` after the last step.
    """
    state = OptState.zeros(fast) if state is None else state
    moments, t0 = (state.m, state.v, state.s, state.sign), state.t
    first, progress = state.first, state.progress
    scale = best = None
    if guard:
        scale = x.new_ones(x.shape[0]) if state.scale is None else state.scale
        best = x.new_full((x.shape[0],), torch.inf) if state.best is None else state.best
    for step in range(1, steps + 1):
        t = t0 + step

        def one(f, mo, fi, pr, sc, bb, xt, yt, t=t):
            return rule_step(graph, update, f, frozen, mo, fi, pr, xt, yt, t=t, horizon=horizon,
                             loss=loss, scale=sc, best=bb, slack=slack)  # fmt: skip

        if vectorize:
            dim = 0 if guard else None
            out = vmap(one, in_dims=(0, 0, 0, 0, dim, dim, 0, 0), out_dims=(0, 0, 0, 0, dim, dim))(
                fast, moments, first, progress, scale, best, x, y
            )
        else:
            pick = lambda d, i: {k: d[k][i] for k in d}  # noqa: E731
            outs = [one(pick(fast, i), tuple(pick(d, i) for d in moments),
                        *(None if a is None else a[i] for a in (first, progress, scale, best)),
                        x[i], y[i]) for i in range(x.shape[0])]  # fmt: skip
            stack = lambda ds: {k: torch.stack([d[k] for d in ds]) for k in ds[0]}  # noqa: E731
            out = [stack([o[0] for o in outs]),
                   tuple(stack([o[1][j] for o in outs]) for j in range(len(moments)))]  # fmt: skip
            out += [None if outs[0][j] is None else torch.stack([o[j] for o in outs])
                    for j in range(2, 6)]  # fmt: skip
        fast, moments, first, progress, scale, best = out
        if truncation is not None and step % truncation == 0 and step < steps:
            fast = {k: p.detach() for k, p in fast.items()}
            state = OptState(*moments, t, first, progress).detach()
            moments = (state.m, state.v, state.s, state.sign)
            first, progress = state.first, state.progress
        if on_step is not None:
            on_step(step, fast)
    return fast, OptState(*moments, t0 + steps, first, progress, scale, best)
