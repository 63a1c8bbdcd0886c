"""Gradient-descent fine-tuning of a fixed initialisation on each task's support set.

The two non-meta-learned baselines a user would otherwise pick share this learner: *scratch*
(a random initialisation, every parameter trained) and *pre-train + fine-tune* (pooled
pre-training, see :mod:`metacompose.baselines.pretrain`). Tasks are adapted in parallel with ``vmap``;
the optimizer is Adam (or SGD), written as pure functions on task-batched parameter dicts.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import grad, vmap

from metacompose.algorithms.inner_loop import Params, broadcast_tasks, query_losses
from metacompose.algorithms.losses import task_loss
from metacompose.graph import ModuleGraph
from metacompose.tasks.base import TaskBatch

OPTIMIZERS = ("adam", "sgd")


def adam_update(
    params: Params,
    grads: Params,
    state: dict[str, Params],
    step: int,
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[Params, dict[str, Params]]:
    """One Adam step (Kingma & Ba 2015, bias-corrected), elementwise, so any leading task dims work.

    Args:
        params, grads: tensors of equal shapes per key.
        state: ``{"m": ..., "v": ...}`` first/second moment dicts (zeros before step 1).
        step: the step number, starting at 1.

    Returns:
        The new parameters and the new state.
    """
    b1, b2 = betas
    m = {k: b1 * state["m"][k] + (1 - b1) * grads[k] for k in params}
    v = {k: b2 * state["v"][k] + (1 - b2) * grads[k] ** 2 for k in params}
    c1, c2 = 1 - b1**step, 1 - b2**step
    new = {k: params[k] - lr * (m[k] / c1) / ((v[k] / c2).sqrt() + eps) for k in params}
    return new, {"m": m, "v": v}


class FineTuneLearner(nn.Module):
    """Adapts the graph's own parameters to each task by plain gradient descent; no meta-learning.

    ``evaluate`` has the interface of :meth:`metacompose.algorithms.MetaLearner.evaluate`, so the
    baselines run through the same evaluation code as the meta-learners.

    Args:
        graph: the model and its starting parameters (random: scratch; pre-trained: fine-tune).
        loss: ``"mse"`` or ``"cross_entropy"``.
        lr: step size.
        steps: optimizer steps on the support set at evaluation (default of ``evaluate``).
        adapt: node names trained per task (``None``: all; ``["head"]``: a linear probe).
        optimizer: ``"adam"`` or ``"sgd"`` (full batch: the whole support set each step).
    """

    def __init__(
        self,
        *,
        graph: ModuleGraph,
        loss: str,
        lr: float = 1e-2,
        steps: int = 100,
        adapt: list[str] | None = None,
        optimizer: str = "adam",
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if steps < 0 or lr <= 0:
            raise ValueError(f"need steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
        self.graph = graph
        self.loss = loss
        self.lr = float(lr)
        self.eval_inner_steps = int(steps)
        self.adapt_keys = graph.param_keys(adapt)
        self.optimizer = optimizer

    def split_params(self) -> tuple[Params, Params]:
        params = {k: v.detach() for k, v in self.graph.named_parameters()}
        fast = {k: params[k] for k in self.adapt_keys}
        return fast, {k: v for k, v in params.items() if k not in fast}

    def adapt(
        self, x: torch.Tensor, y: torch.Tensor, *, steps: int | None = None, on_step=None
    ) -> tuple[Params, Params]:
        """Train on support sets ``x: (T, K, ...)``; returns ``(fast (T, ...), frozen)``."""
        steps = self.eval_inner_steps if steps is None else steps
        fast, frozen = self.split_params()
        fast = {k: v.clone() for k, v in broadcast_tasks(fast, x.shape[0]).items()}

        def support_loss(f: Params, xt: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
            return task_loss(self.graph.apply_params({**frozen, **f}, xt), yt, self.loss)

        task_grads = vmap(grad(support_loss))
        state = {"m": {k: torch.zeros_like(v) for k, v in fast.items()}}
        state["v"] = {k: torch.zeros_like(v) for k, v in fast.items()}
        with torch.enable_grad():
            for s in range(1, steps + 1):
                g = task_grads(fast, x, y)
                if self.optimizer == "adam":
                    fast, state = adam_update(fast, g, state, s, lr=self.lr)
                else:
                    fast = {k: fast[k] - self.lr * g[k] for k in fast}
                fast = {k: v.detach() for k, v in fast.items()}
                if on_step is not None:
                    on_step(s, fast)
        return fast, frozen

    @torch.no_grad()
    def evaluate(self, batch: TaskBatch, *, steps: int | None = None) -> torch.Tensor:
        """Query metric after 0..S optimizer steps on each support set: ``(S + 1, T)``."""
        fast, frozen = self.split_params()
        t = batch.num_tasks

        def metric(f: Params) -> torch.Tensor:
            return query_losses(
                self.graph, f, frozen, batch.query_x, batch.query_y, loss=self.loss, metric=True
            )

        curve = [metric(broadcast_tasks(fast, t))]
        self.adapt(
            batch.support_x,
            batch.support_y,
            steps=steps,
            on_step=lambda _s, f: curve.append(metric(f)),
        )
        return torch.stack(curve)
