"""A stability guard for evaluation-time inner loops: a step is kept only if it does not raise the
task's support loss; a rejected step leaves that task's parameters where they were and halves its
step scale, an accepted one doubles it back, up to 1 (backtracking with reset).

Meta-SGD's learned step sizes (and MAML++'s per-step ones) are fitted to the few inner steps of
meta-training; taken more often at evaluation they overshoot and diverge (sinusoid: 0.25 after one
step, NaN from five). With the guard every task's support loss is non-increasing in the step
count, so the adaptation stays finite for any number of steps; when every step is accepted the
result is exactly plain SGD with the same step sizes (the scale stays 1).

Vectorised like :mod:`metacompose.algorithms.inner_loop`: one task's step is a pure function, run
under ``vmap`` (or a per-task loop for images on CPU); accept/reject is a ``torch.where`` per task.
The guard is first order (gradients at detached parameters): it is for evaluation, not for the
meta-gradient of training.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import grad_and_value, vmap

from metacompose.algorithms.inner_loop import (
    FunctionalModel,
    Params,
    StepSizes,
    Vectorize,
    at_step,
    per_task,
    use_vmap,
)
from metacompose.algorithms.losses import task_loss

SHRINK = 0.5  # a rejected step multiplies that task's step scale by this
GROW = 2.0  # an accepted step multiplies it by this, up to 1 (so it never exceeds the rule's own)


def accept_if_lower(
    before: torch.Tensor, after: torch.Tensor, old: Params, new: Params, scale: torch.Tensor
) -> tuple[Params, torch.Tensor]:
    """``(params, scale)`` after one guarded step of ONE task (``before``/``after``: 0-dim losses).

    ``new`` is kept when ``after <= before`` (a NaN loss is never accepted) with
    ``min(scale * GROW, 1)``, else ``old`` with ``scale * SHRINK``."""
    ok = after <= before
    kept = {k: torch.where(ok, new[k], old[k]) for k in old}
    return kept, torch.where(ok, (scale * GROW).clamp(max=1.0), scale * SHRINK)


def guarded_sgd_step(
    graph: FunctionalModel,
    fast: Params,
    frozen: Params,
    lrs: StepSizes,
    scale: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: str,
) -> tuple[Params, torch.Tensor]:
    """One guarded SGD step on ONE task: candidate ``fast - scale * lr * grad``.

    Args:
        fast: the adapted parameters (no task dimension); frozen: the rest.
        lrs: step sizes by key (floats or tensors broadcastable to the parameter).
        scale: 0-dim, this task's step scale (starts at 1).
        x: ``(K, *in_shape)`` support inputs; y: their targets.

    Returns:
        ``(fast, scale)`` after the step (accepted or not).
    """
    at = {k: v.detach() for k, v in fast.items()}
    held = {k: v.detach() for k, v in frozen.items()}

    def support_loss(f: Params) -> torch.Tensor:
        return task_loss(graph.apply_params({**held, **f}, x), y, loss)

    grads, before = grad_and_value(support_loss)(at)
    new = {k: at[k] - (scale * lrs[k]) * grads[k] for k in at}
    return accept_if_lower(before, support_loss(new), at, new, scale)


def guarded_adapt(
    graph: FunctionalModel,
    fast: Params,
    frozen: Params | list[Params],
    lrs: StepSizes | list[StepSizes],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    loss: str,
    vectorize: Vectorize = True,
    chunk_size: int | None = None,
    on_step: Callable[[int, Params], None] | None = None,
) -> Params:
    """:func:`~metacompose.algorithms.inner_loop.adapt` (first order) with the guard per task.

    Args:
        fast: adapted parameters WITH a leading task dimension ``T``.
        frozen: the rest, or a list of them, one per step (as in ``adapt``); a step's guard
            compares the support losses before and after it under that step's element.
        lrs: step sizes, or a list of them, one per step (steps past its end reuse the last).
        x: ``(T, K, *in_shape)``; y: ``(T, K, ...)``.
        on_step: ``on_step(s, fast)`` after each step ``s = 1..steps``.

    Returns:
        the adapted parameters, ``(T, ...)`` each (detached).
    """
    fast = {k: v.detach() for k, v in fast.items()}
    scale = x.new_ones(x.shape[0])

    def one(f, sc, lr, z, xt, yt):
        return guarded_sgd_step(graph, f, z, lr, sc, xt, yt, loss=loss)

    if use_vmap(vectorize, x):
        step = vmap(one, in_dims=(0, 0, None, None, 0, 0), chunk_size=chunk_size)
    else:

        def step(f, sc, lr, z, xs, ys):
            outs = [one(ft, sc[t], lr, z, xs[t], ys[t]) for t, ft in enumerate(per_task(f))]
            stacked = {k: torch.stack([o[0][k] for o in outs]) for k in f}
            return stacked, torch.stack([o[1] for o in outs])

    for s in range(steps):
        lr = lrs[min(s, len(lrs) - 1)] if isinstance(lrs, list) else lrs
        lr = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in lr.items()}
        fast, scale = step(fast, scale, lr, at_step(frozen, s), x, y)
        if on_step is not None:
            on_step(s + 1, fast)
    return fast
