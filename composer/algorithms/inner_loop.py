"""The functional inner loop: SGD on a task's support set, over the tasks of a meta-batch either
vectorised with ``vmap`` (``torch.func.grad`` inside) or in a per-task loop (``torch.autograd.grad``),
chosen by :func:`use_vmap` (images on CPU loop, everything else vmaps).

Parameters travel as explicit dicts. ``fast`` holds the adapted parameters with a leading task
dimension ``T``; ``frozen`` holds the meta-parameters outside the adaptation scope (shared by all
tasks). Nothing here mutates a module: the graph is only ever called through ``functional_call``.
"""

from __future__ import annotations

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
    return {k: fast[k] - lrs[k] * grads[k] for k in fast}


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
    return {k: fast[k] - lrs[k] * g for k, g in zip(at, grads)}


def adapt(
    graph: FunctionalModel,
    fast: Params,
    frozen: Params,
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
        lrs: the step sizes (see :func:`sgd_step`), or a list of them, one per step (MAML++'s
            per-step learning rates); steps past its end reuse the last.
        x: ``(T, K, *in_shape)``; y: ``(T, K, ...)``.
        vectorize: ``vmap`` over tasks, a Python loop over tasks (``False``; also the reference
            path), or ``"auto"`` (:func:`use_vmap`).
        chunk_size: process at most this many tasks at once inside ``vmap`` (bounds memory).
        checkpoint_steps: recompute each step's activations in the backward pass instead of keeping
            them, so second-order memory does not grow with ``steps`` (activation checkpointing).
        on_step: called as ``on_step(s, fast)`` after each step ``s = 1..steps`` (evaluation curves).

    Returns:
        the adapted parameters, ``(T, ...)`` each.
    """

    vectorized = use_vmap(vectorize, x)

    def one(f: Params, z: Params, lr: StepSizes, xt: torch.Tensor, yt: torch.Tensor) -> Params:
        inner = sgd_step if vectorized else autograd_sgd_step
        return inner(graph, f, z, lr, xt, yt, loss=loss, first_order=first_order)

    if vectorized:
        step = vmap(one, in_dims=(0, None, None, 0, 0), chunk_size=chunk_size)
    else:

        def step(f: Params, z: Params, lr: StepSizes, xs: torch.Tensor, ys: torch.Tensor) -> Params:
            outs = [one(ft, z, lr, xs[t], ys[t]) for t, ft in enumerate(per_task(f))]
            return {k: torch.stack([o[k] for o in outs]) for k in f}

    use_ckpt = checkpoint_steps and not first_order and torch.is_grad_enabled()
    for s in range(steps):
        lr = lrs[min(s, len(lrs) - 1)] if isinstance(lrs, list) else lrs
        if use_ckpt:
            fast = _checkpointed(step, fast, frozen, lr, x, y)
        else:
            fast = step(fast, frozen, lr, x, y)
        if on_step is not None:
            on_step(s + 1, fast)
    return fast


def _checkpointed(step, fast: Params, frozen: Params, lrs: StepSizes, x, y) -> Params:
    """Run one ``step`` under reentrant activation checkpointing.

    Reentrant checkpointing routes gradients only to tensors passed as explicit inputs, so the frozen
    parameters and learned step sizes are flattened into the inputs alongside the fast weights.
    (Non-reentrant checkpointing relies on saved-tensor hooks, which ``torch.func`` rejects.)
    """
    fkeys, zkeys = list(fast), list(frozen)
    lkeys = [k for k, v in lrs.items() if isinstance(v, torch.Tensor)]
    nf, nz = len(fkeys), len(zkeys)

    def run(*flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f = dict(zip(fkeys, flat[:nf]))
        z = dict(zip(zkeys, flat[nf : nf + nz]))
        lr = {**lrs, **dict(zip(lkeys, flat[nf + nz : -2]))}
        return tuple(step(f, z, lr, flat[-2], flat[-1]).values())

    flat = [*fast.values(), *frozen.values(), *(lrs[k] for k in lkeys), x, y]
    return dict(zip(fkeys, checkpoint(run, *flat, use_reentrant=True)))


def per_task(params: Params) -> list[Params]:
    """``params`` with a leading task dimension, as one dict per task.

    ``unbind`` rather than indexing: the backward of ``v[t]`` writes a zero-filled ``(T, ...)``
    gradient for every task (quadratic in ``T``), that of ``unbind`` stacks the ``T`` gradients.
    """
    keys = list(params)
    return [dict(zip(keys, vals)) for vals in zip(*(params[k].unbind(0) for k in keys))]


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
