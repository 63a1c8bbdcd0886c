"""The functional inner loop: SGD on a task's support set, over the tasks of a meta-batch either
vectorised (a ``vmap``-ped forward of every task, one ``torch.autograd.grad`` for all: see
:func:`batched_sgd_step`) or in a per-task loop (``torch.autograd.grad`` per task), chosen by
:func:`use_vmap` (images on CPU loop, everything else vmaps). :func:`sgd_step` is the one-task
``torch.func.grad`` form (for callers that ``vmap`` it themselves).

Parameters travel as explicit dicts. ``fast`` holds the adapted parameters with a leading task
dimension ``T``; ``frozen`` holds the meta-parameters outside the adaptation scope (shared by all
tasks). Nothing here mutates a module: the graph is only ever called through ``functional_call``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, Protocol

import torch
from torch.func import grad, vmap
from torch.utils.checkpoint import checkpoint

from metacompose.algorithms.losses import task_loss, task_metric

Params = dict[str, torch.Tensor]
StepSizes = dict[str, torch.Tensor | float]
Vectorize = bool | Literal["auto"]


def use_vmap(vectorize: Vectorize, x: torch.Tensor) -> bool:
    """Whether to ``vmap`` over tasks: ``vectorize`` itself, or for ``"auto"`` a measured rule.

    ``"auto"`` loops over tasks for image inputs on CPU (``x: (T, K, C, H, W)``) and vmaps
    otherwise. On CPU, ``vmap`` turns a conv with per-task weights into one grouped conv over
    ``T * C`` channels and runs batch norm and max-pool on ``(B, T * C, H, W)`` tensors in NCHW
    layout, where oneDNN's grouped kernels and the unvectorised NCHW max-pool are slow: the
    per-task loop with channels-last activations measured 2.5-5x faster (conv4, 5-way 1-shot, one
    thread). For MLPs (the sinusoid) ``vmap`` is ~5x faster than the loop. On GPU, ``vmap``'s grouped
    conv is one large kernel instead of ``T`` small launches, so ``"auto"`` keeps ``vmap`` there.
    """
    if vectorize == "auto":
        return not (x.device.type == "cpu" and x.dim() >= 5)
    return bool(vectorize)


def descend(p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor | float) -> torch.Tensor:
    """``p - lr * g``; one op (and one autograd node) for a plain step size."""
    if isinstance(lr, float):
        return torch.add(p, g, alpha=-lr)
    return p - lr * g


class FunctionalModel(Protocol):
    """A model called with explicit parameters: a ``ModuleGraph`` or a router's ``ModulePool``."""

    def apply_params(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """One task: ``(B, *in_shape) -> (B, *out_shape)`` with ``params`` by name."""
        ...


def sgd_step(
    graph: FunctionalModel,
    fast: Params,
    frozen: Params,
    lrs: StepSizes,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: str,
    first_order: bool,
) -> Params:
    """One inner SGD step on ONE task: ``fast - lr * d loss(x, y) / d fast``.

    Args:
        graph: the model; called with ``{**frozen, **fast}``.
        fast: the adapted parameters (no task dimension).
        frozen: parameters outside the adaptation scope.
        lrs: a step size per key of ``fast``: a float or a tensor broadcastable to the parameter
            (Meta-SGD's learned per-parameter step sizes).
        x: ``(K, *in_shape)`` support inputs; y: their targets.
        loss: ``"mse"`` or ``"cross_entropy"``.
        first_order: treat the inner gradient as a constant (FOMAML, Reptile): it is taken at
            detached copies of the parameters, so the outer graph records no support forward.
    """
    if first_order:
        at, held = (
            {k: v.detach() for k, v in fast.items()},
            {k: v.detach() for k, v in frozen.items()},
        )
    else:
        at, held = fast, frozen

    def support_loss(f: Params) -> torch.Tensor:
        return task_loss(graph.apply_params({**held, **f}, x), y, loss)

    grads = grad(support_loss)(at)
    return {k: descend(fast[k], grads[k], lrs[k]) for k in fast}


def batched_sgd_step(
    graph: FunctionalModel,
    fast: Params,
    frozen: Params,
    lrs: StepSizes,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: str,
    first_order: bool,
    chunk_size: int | None = None,
) -> Params:
    """:func:`sgd_step` on EVERY task at once (same result): the support losses of all tasks from
    one ``vmap``-ped forward, their gradients from ONE ``torch.autograd.grad`` of their sum.

    Task ``t``'s loss depends only on ``fast[k][t]``, so the gradient of the sum with respect to
    ``fast[k]: (T, ...)`` stacks the per-task gradients. Only the forward is vectorised: no
    ``torch.func.grad`` inside ``vmap`` (its per-call wrapping measured ~17% of a sinusoid
    meta-step). Second order keeps the inner gradient in the graph (``create_graph``); first order,
    or no grad mode, takes it at detached parameters.

    Args:
        fast: the adapted parameters WITH a leading task dimension ``T``.
        x: ``(T, K, *in_shape)``; y: ``(T, K, ...)``.
        chunk_size: ``vmap`` at most this many tasks at once in the forward.
    """
    if first_order or not torch.is_grad_enabled():
        at = {k: v.detach().requires_grad_() for k, v in fast.items()}
        held = {k: v.detach() for k, v in frozen.items()}
    else:
        at = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in fast.items()}
        held = frozen
    second = not first_order and torch.is_grad_enabled()

    def support_loss(f: Params, xt: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
        return task_loss(graph.apply_params({**held, **f}, xt), yt, loss)

    with torch.enable_grad():
        losses = vmap(support_loss, chunk_size=chunk_size)(at, x, y)
        grads = torch.autograd.grad(losses.sum(), list(at.values()), create_graph=second)
    return {k: descend(fast[k], g, lrs[k]) for k, g in zip(at, grads)}


def autograd_sgd_step(
    graph: FunctionalModel,
    fast: Params,
    frozen: Params,
    lrs: StepSizes,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: str,
    first_order: bool,
) -> Params:
    """:func:`sgd_step` with ``torch.autograd.grad`` instead of ``torch.func.grad`` (same result).

    The per-task loop uses it: without functorch's wrapper tensors every op dispatches once, which
    measured ~15% faster on the conv net, and the graph accepts saved-tensor hooks. Second order
    keeps the inner gradient in the graph (``create_graph``); first order, or no grad mode (as in
    ``evaluate``), takes it at detached parameters.
    """
    if first_order or not torch.is_grad_enabled():
        at = {k: v.detach().requires_grad_() for k, v in fast.items()}
        held = {k: v.detach() for k, v in frozen.items()}
        with torch.enable_grad():
            value = task_loss(graph.apply_params({**held, **at}, x), y, loss)
            grads = torch.autograd.grad(value, list(at.values()))
    else:
        at = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in fast.items()}
        value = task_loss(graph.apply_params({**frozen, **at}, x), y, loss)
        grads = torch.autograd.grad(value, list(at.values()), create_graph=True)
    return {k: descend(fast[k], g, lrs[k]) for k, g in zip(at, grads)}


def adapt(
    graph: FunctionalModel,
    fast: Params,
    frozen: Params | list[Params],
    lrs: StepSizes | list[StepSizes],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    loss: str,
    first_order: bool,
    vectorize: Vectorize = True,
    chunk_size: int | None = None,
    checkpoint_steps: bool = False,
    on_step: Callable[[int, Params], None] | None = None,
) -> Params:
    """Adapt every task of a meta-batch for ``steps`` inner steps.

    Args:
        fast: adapted parameters WITH a leading task dimension ``T`` (use :func:`broadcast_tasks`).
        frozen: the parameters outside the adaptation scope, or a list of them, one per step (the
            step from state ``s`` reads element ``s``; past its end, the last: MAML++'s per-step
            batch-norm weights); the same keys in every element.
        lrs: the step sizes (see :func:`sgd_step`), or a list of them, one per step (MAML++'s
            per-step learning rates); steps past its end reuse the last.
        x: ``(T, K, *in_shape)``; y: ``(T, K, ...)``.
        vectorize: ``vmap`` over tasks, a Python loop over tasks (``False``; also the reference
            path), or ``"auto"`` (:func:`use_vmap`).
        chunk_size: process at most this many tasks at once inside ``vmap`` (bounds memory).
        checkpoint_steps: recompute each step's activations in the backward pass instead of keeping
            them (activation checkpointing), in ``~sqrt(steps)`` segments of ``~sqrt(steps)`` steps
            (:func:`segments`), so that second-order memory stays flat in ``steps``: one step's
            activations and ``~2 sqrt(steps)`` copies of the fast weights are held at a time.
        on_step: called as ``on_step(s, fast)`` after each step ``s = 1..steps`` (evaluation curves).

    Returns:
        the adapted parameters, ``(T, ...)`` each.
    """

    def step(f: Params, z: Params, lr: StepSizes, xs: torch.Tensor, ys: torch.Tensor) -> Params:
        if use_vmap(vectorize, x):
            return batched_sgd_step(
                graph, f, z, lr, xs, ys, loss=loss, first_order=first_order, chunk_size=chunk_size
            )
        return looped_steps(graph, f, [z], [lr], xs, ys, loss=loss, first_order=first_order)

    per_step = [lrs[min(s, len(lrs) - 1)] if isinstance(lrs, list) else lrs for s in range(steps)]
    held = [at_step(frozen, s) for s in range(steps)]
    if checkpoint_steps and not first_order and torch.is_grad_enabled() and on_step is None:
        start = 0
        for size in segments(steps):
            part = slice(start, start + size)
            fast = _checkpointed(step, fast, held[part], per_step[part], x, y, nested=size > 1)
            start += size
        return fast
    if per_step and not use_vmap(vectorize, x):
        return looped_steps(
            graph, fast, held, per_step, x, y, loss=loss, first_order=first_order, on_step=on_step
        )
    for s, lr in enumerate(per_step):
        fast = step(fast, held[s], lr, x, y)
        if on_step is not None:
            on_step(s + 1, fast)
    return fast


def looped_steps(
    graph: FunctionalModel,
    fast: Params,
    held: list[Params],
    per_step: list[StepSizes],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: str,
    first_order: bool,
    on_step: Callable[[int, Params], None] | None = None,
) -> Params:
    """``len(per_step)`` steps (step ``s`` with ``held[s]``, ``per_step[s]``) of every task in a
    Python loop over tasks: the reference path, and the faster one for images on CPU.

    It keeps one dict per task across the steps and stacks once at the end (unbinding and
    stacking at every step cost ~2% of a five-step conv4 meta-iteration).
    """
    tasks = per_task(fast)
    for s, lr in enumerate(per_step):
        tasks = [
            autograd_sgd_step(
                graph, ft, held[s], lr, x[t], y[t], loss=loss, first_order=first_order
            )
            for t, ft in enumerate(tasks)
        ]
        if on_step is not None:
            on_step(s + 1, {k: stack_tasks([t[k] for t in tasks]) for k in fast})
    return {k: stack_tasks([t[k] for t in tasks]) for k in fast}


def at_step(frozen: Params | list[Params], s: int) -> Params:
    """The frozen parameters of state ``s`` (after ``s`` inner steps): ``frozen`` itself, or
    element ``s`` of a per-step list (its last past the end)."""
    return frozen[min(s, len(frozen) - 1)] if isinstance(frozen, list) else frozen


def segments(steps: int) -> list[int]:
    """Checkpoint segments of an unrolled loop of ``steps`` steps: ``ceil(sqrt(steps))`` steps
    each (the last one shorter), e.g. 10 -> ``[4, 4, 2]``, 50 -> ``[8] * 6 + [2]``.

    Each segment keeps its input (the fast weights) through the forward pass; its backward
    recomputes it step by step, each step checkpointed again, so at most ``len(segments) + size``
    copies of the fast weights and one step's activations are alive: ``~2 sqrt(steps)`` copies,
    for one extra forward pass of every step.
    """
    if steps <= 0:
        return []
    size = math.isqrt(steps - 1) + 1  # ceil(sqrt(steps))
    return [min(size, steps - start) for start in range(0, steps, size)]


def _checkpointed(
    step, fast: Params, frozen: list[Params], lrs: list[StepSizes], x, y, *, nested: bool
) -> Params:
    """Run ``len(lrs)`` steps (step ``i`` with ``frozen[i]`` and ``lrs[i]``) under one reentrant
    checkpoint; ``nested``: each step inside is checkpointed again (its recomputation holds one
    step's graph).

    Reentrant checkpointing routes gradients only to tensors passed as explicit inputs, so every
    step's frozen parameters and learned step sizes are flattened into the inputs alongside the
    fast weights (a tensor shared by several steps is passed once per step; autograd sums).
    (Non-reentrant checkpointing relies on saved-tensor hooks, which ``torch.func`` rejects.)
    """
    fkeys, zkeys = list(fast), list(frozen[0])
    where = [
        (i, k) for i, lr in enumerate(lrs) for k, v in lr.items() if isinstance(v, torch.Tensor)
    ]
    nf, nz, n = len(fkeys), len(zkeys), len(lrs)

    def run(*flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f = dict(zip(fkeys, flat[:nf]))
        zs = [dict(zip(zkeys, flat[nf + i * nz : nf + (i + 1) * nz])) for i in range(n)]
        lr = [dict(d) for d in lrs]
        for (i, k), v in zip(where, flat[nf + n * nz : -2]):
            lr[i][k] = v
        for z, d in zip(zs, lr):
            if nested and torch.is_grad_enabled():  # the recomputation in the backward pass
                f = _checkpointed(step, f, [z], [d], flat[-2], flat[-1], nested=False)
            else:
                f = step(f, z, d, flat[-2], flat[-1])
        return tuple(f.values())

    flat = [
        *fast.values(),
        *(z[k] for z in frozen for k in zkeys),
        *(lrs[i][k] for i, k in where),
        x,
        y,
    ]
    return dict(zip(fkeys, checkpoint(run, *flat, use_reentrant=True)))


def per_task(params: Params) -> list[Params]:
    """``params`` with a leading task dimension, as one dict per task.

    ``unbind`` rather than indexing: the backward of ``v[t]`` writes a zero-filled ``(T, ...)``
    gradient for every task (quadratic in ``T``), that of ``unbind`` stacks the ``T`` gradients.
    """
    keys = list(params)
    if keys and all(params[k].shape[0] == 1 for k in keys):  # one task: views both ways, no copy
        return [{k: params[k].squeeze(0) for k in keys}]
    return [dict(zip(keys, vals)) for vals in zip(*(params[k].unbind(0) for k in keys))]


def stack_tasks(values: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack(values)``; one task is a view (``unsqueeze``), not a copy (a meta-batch cut into
    chunks of one task copied every fast weight at every inner step: ~2% of a conv4 meta-step)."""
    return values[0].unsqueeze(0) if len(values) == 1 else torch.stack(values)


def broadcast_tasks(params: Params, num_tasks: int) -> Params:
    """Give every parameter a leading task dimension (a view: no copy, gradients sum over tasks)."""
    return {k: v.unsqueeze(0).expand(num_tasks, *v.shape) for k, v in params.items()}


def query_losses(
    graph: FunctionalModel,
    fast: Params,
    frozen: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: str,
    metric: bool = False,
    vectorize: Vectorize = True,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Per-task query loss (or metric) of the adapted parameters: ``(T,)``."""
    fn = task_metric if metric else task_loss

    def one(f: Params, xt: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
        return fn(graph.apply_params({**frozen, **f}, xt), yt, loss)

    if use_vmap(vectorize, x):
        return vmap(one, in_dims=(0, 0, 0), chunk_size=chunk_size)(fast, x, y)
    return torch.stack([one(f, x[t], y[t]) for t, f in enumerate(per_task(fast))])


def query_predictions(
    graph: FunctionalModel,
    fast: Params,
    frozen: Params,
    x: torch.Tensor,
    *,
    vectorize: Vectorize = True,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """The adapted model's outputs on each task's query inputs ``x: (T, Q, ...)``: ``(T, Q, out)``."""

    def one(f: Params, xt: torch.Tensor) -> torch.Tensor:
        return graph.apply_params({**frozen, **f}, xt)

    if use_vmap(vectorize, x):
        return vmap(one, in_dims=(0, 0), chunk_size=chunk_size)(fast, x)
    return torch.stack([one(f, x[t]) for t, f in enumerate(per_task(fast))])
