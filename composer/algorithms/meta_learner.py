"""``MetaLearner``: one graph + one algorithm of the MAML family, as an ``nn.Module``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, get_args

import torch
from torch import nn

from metacompose.algorithms.guarded import guarded_adapt
from metacompose.algorithms.inner_loop import (
    Params,
    adapt,
    broadcast_tasks,
    query_losses,
    query_predictions,
)
from metacompose.algorithms.inner_settings import DEFAULT_INNER, InnerLoop
from metacompose.algorithms.learner import MetaStep, Submodule, TaskExport
from metacompose.algorithms.per_step_norm import PerStepNorms
from metacompose.algorithms.step_sizes import learned_step_sizes, safe_name
from metacompose.graph import ModuleGraph
from metacompose.tasks.base import TaskBatch

Algorithm = Literal["maml", "fomaml", "metasgd", "anil", "reptile"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
RunSteps = Callable[[Params, int, Callable | None], Params]


class InnerLoopEnforcer(Protocol):
    """Certifies (and may repair) every task's adaptation; implemented by
    :class:`metacompose.verify.enforce.Enforcer`."""

    def adapt(
        self, graph: ModuleGraph, fast: Params, frozen: Params, run: RunSteps, *, steps: int,
        x: torch.Tensor, on_step=None,
    ) -> Params:  # fmt: skip
        """``run(fast, steps, on_step)`` with certification between or after the steps."""
        ...


class MetaLearner(nn.Module):
    """Meta-learns the initial parameters (and, for Meta-SGD, step sizes) of a ``ModuleGraph``.

    Algorithms:
        ``maml`` second-order MAML; ``fomaml`` first-order MAML; ``metasgd`` MAML with learned
        per-parameter step sizes (Li et al. 2017); ``anil`` MAML adapting only the ``adapt`` scope
        (default: the ``head`` node); ``reptile`` (Nichol et al. 2018): the meta-gradient is the mean
        of ``theta - theta_task`` after SGD on the task's support and query data.

    Args:
        graph: the model to meta-learn.
        algorithm: one of ``ALGORITHMS``.
        loss: ``"mse"`` or ``"cross_entropy"``.
        inner: the inner loop's step size, step counts, order and vectorisation
            (:class:`~metacompose.algorithms.inner_settings.InnerLoop`).
        adapt: node names adapted in the inner loop; ``None`` means all (``["head"]`` for ANIL).
        checkpoint_inner: activation checkpointing of each inner step (second order only).
        per_step_lr: learn one step size per adapted tensor and inner step (MAML++'s LSLR, Antoniou
            et al. 2019), all starting at ``inner_lr``; evaluation with more steps than
            ``inner_steps`` reuses the last step's. Not with ``metasgd`` or ``reptile``.
        per_step_bn: one meta-learned batch-norm weight and bias per inner-loop state (MAML++'s
            BNWB, :mod:`metacompose.algorithms.per_step_norm`); batch-norm parameters are then not
            adapted. Not with ``reptile`` or an enforcer.
        enforcer: certifies (and by its mode repairs) every task's adaptation against a
            stability spec (:mod:`metacompose.verify.enforce`); ``None``: no enforcement.
        eval_guard: at evaluation (``evaluate``, ``export_tasks``) keep an inner step only if it
            does not raise the task's support loss, else halve that task's step scale
            (:mod:`metacompose.algorithms.guarded`): finite for any number of steps. ``"auto"``:
            on for learned step sizes (``metasgd``, ``per_step_lr``), which overshoot past the
            steps they were trained for; off for a fixed ``inner_lr``. Training is never guarded.
    """

    graph = Submodule()  # the model: seen by static protocol checks (Python 3.12+)

    def __init__(
        self,
        *,
        graph: ModuleGraph,
        algorithm: Algorithm = "maml",
        loss: str = "mse",
        inner: InnerLoop = DEFAULT_INNER,
        adapt: list[str] | None = None,
        checkpoint_inner: bool = False,
        per_step_lr: bool = False,
        per_step_bn: bool = False,
        enforcer: InnerLoopEnforcer | None = None,
        eval_guard: bool | Literal["auto"] = "auto",
    ) -> None:
        super().__init__()
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {algorithm!r}; known: {ALGORITHMS}")
        self.graph = graph
        self.algorithm = algorithm
        self.loss = loss
        self.inner_lr = float(inner.lr)
        self.inner_steps = int(inner.steps)
        self.eval_inner_steps = int(inner.eval_steps)
        if adapt is None and algorithm == "anil":
            adapt = ["head"]
        self.step_norms = PerStepNorms(graph=graph, steps=self.inner_steps) if per_step_bn else None
        if per_step_bn and (algorithm == "reptile" or enforcer is not None):
            raise ValueError("per_step_bn: not available with reptile or enforcement")
        held = self.step_norms.keys if self.step_norms is not None else []
        self.adapt_keys = [k for k in graph.param_keys(adapt) if k not in held]
        if not self.adapt_keys:
            raise ValueError(f"adaptation scope {adapt} selects no parameters")
        self.first_order = bool(inner.first_order) or algorithm in ("fomaml", "reptile")
        self.vectorize = inner.vectorize
        self.chunk_size = inner.chunk_size
        self.checkpoint_inner = checkpoint_inner
        self.enforcer = enforcer
        if per_step_lr and algorithm in ("metasgd", "reptile"):
            raise ValueError(f"per_step_lr: not available with algorithm={algorithm}")
        self.per_step_lr = per_step_lr
        if eval_guard not in (True, False, "auto"):
            raise ValueError(f"eval_guard must be true, false or auto, got {eval_guard!r}")
        learned = algorithm == "metasgd" or per_step_lr
        self.eval_guard = learned if eval_guard == "auto" else bool(eval_guard)
        params = dict(graph.named_parameters())
        if per_step_lr:
            scalars = {
                f"{k}.step{s}": params[k].new_empty(())
                for s in range(self.inner_steps)
                for k in self.adapt_keys
            }
            self.step_sizes = learned_step_sizes(scalars, self.inner_lr)
        else:
            self.step_sizes = learned_step_sizes(
                {k: params[k] for k in self.adapt_keys} if algorithm == "metasgd" else {},
                self.inner_lr,
            )

    # ------------------------------------------------------------------------------ parameters
    def split_params(self, params: Params | None = None) -> tuple[Params, Params]:
        """``(adapted scope, frozen rest)`` of ``params`` (default: the graph's own)."""
        params = dict(self.graph.named_parameters()) if params is None else params
        fast = {k: params[k] for k in self.adapt_keys}
        frozen = {k: v for k, v in params.items() if k not in fast}
        return fast, frozen

    def frozen_at(self, frozen: Params, s: int) -> Params:
        """``frozen`` as the model after ``s`` inner steps reads it (``per_step_bn``: with that
        state's batch-norm weights and biases)."""
        return frozen if self.step_norms is None else {**frozen, **self.step_norms.at(s)}

    def lrs(self) -> dict[str, torch.Tensor | float] | list[dict[str, torch.Tensor | float]]:
        """Step sizes by adapted key (a list of them, one per inner step, with ``per_step_lr``)."""
        if self.per_step_lr:
            return [
                {k: self.step_sizes[safe_name(f"{k}.step{s}")] for k in self.adapt_keys}
                for s in range(self.inner_steps)
            ]
        if self.algorithm == "metasgd":
            return {k: self.step_sizes[safe_name(k)] for k in self.adapt_keys}
        return dict.fromkeys(self.adapt_keys, self.inner_lr)

    # ------------------------------------------------------------------------------ inner loop
    def adapt(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        steps: int | None = None,
        params: Params | None = None,
        first_order: bool | None = None,
        on_step=None,
        guard: bool = False,
    ) -> tuple[Params, Params]:
        """Adapt to a meta-batch of support sets ``x: (T, K, ...)``; returns ``(fast, frozen)``.

        ``fast`` has a leading task dimension; ``frozen`` is shared (with ``per_step_bn``: that of
        the state after the last step). ``on_step(s, fast)`` is called
        after each step. ``guard``: the first-order guarded loop
        (:func:`~metacompose.algorithms.guarded.guarded_adapt`; evaluation only).
        """
        fast, frozen = self.split_params(params)
        fast = broadcast_tasks(fast, x.shape[0])
        fo = self.first_order if first_order is None else first_order
        steps = self.inner_steps if steps is None else steps
        held = frozen if self.step_norms is None else self.step_norms.states(frozen, steps)

        def run(f: Params, n: int, on) -> Params:
            if guard:
                return guarded_adapt(
                    self.graph, f, held, self.lrs(), x, y, steps=n, loss=self.loss,
                    vectorize=self.vectorize, chunk_size=self.chunk_size, on_step=on,
                )  # fmt: skip
            return adapt(
                self.graph,
                f,
                held,
                self.lrs(),
                x,
                y,
                steps=n,
                loss=self.loss,
                first_order=fo,
                vectorize=self.vectorize,
                chunk_size=self.chunk_size,
                checkpoint_steps=self.checkpoint_inner,
                on_step=on,
            )

        if self.enforcer is None:
            return run(fast, steps, on_step), self.frozen_at(frozen, steps)
        return self.enforcer.adapt(
            self.graph, fast, frozen, run, steps=steps, x=x, on_step=on_step
        ), frozen

    def query_loss(
        self,
        fast: Params,
        frozen: Params,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        metric: bool = False,
    ) -> torch.Tensor:
        """``(T,)`` per-task query loss (or metric) of adapted parameters."""
        return query_losses(
            self.graph,
            fast,
            frozen,
            x,
            y,
            loss=self.loss,
            metric=metric,
            vectorize=self.vectorize,
            chunk_size=self.chunk_size,
        )

    # ------------------------------------------------------------------------------ outer loop
    def meta_step(self, batch: TaskBatch, *, step: int = 0) -> MetaStep:
        """The meta-objective of one meta-batch; ``objective.backward()`` gives the meta-gradient.
        ``step`` (the meta-iteration) is unused: this learner has no schedule."""
        if self.algorithm == "reptile":
            return self._reptile_step(batch)
        fast, frozen = self.adapt(batch.support_x, batch.support_y)
        losses = self.query_loss(fast, frozen, batch.query_x, batch.query_y)
        return MetaStep(objective=losses.mean(), query_loss=losses)

    def _reptile_step(self, batch: TaskBatch) -> MetaStep:
        x = torch.cat([batch.support_x, batch.query_x], dim=1)
        y = torch.cat([batch.support_y, batch.query_y], dim=1)
        with torch.no_grad():
            fast, frozen = self.adapt(x, y)
            losses = self.query_loss(fast, frozen, batch.query_x, batch.query_y)
        meta = dict(self.graph.named_parameters())
        # d/dtheta of sum <theta, (theta - mean_t theta_t).detach()> is theta - mean_t theta_t.
        objective = sum((meta[k] * (meta[k].detach() - fast[k].mean(0))).sum() for k in fast)
        return MetaStep(objective=objective, query_loss=losses)

    @torch.no_grad()
    def evaluate(self, batch: TaskBatch, *, steps: int | None = None) -> torch.Tensor:
        """Query metric after 0..S inner steps (S = ``eval_inner_steps``): ``(S + 1, T)``.

        Inner gradients are still taken (``torch.func.grad`` ignores the outer ``no_grad``), but no
        graph is kept for a meta-gradient.
        """
        steps = self.eval_inner_steps if steps is None else steps
        fast, frozen = self.split_params()
        fast = broadcast_tasks(fast, batch.num_tasks)
        qx, qy = batch.query_x, batch.query_y
        curve = [self.query_loss(fast, self.frozen_at(frozen, 0), qx, qy, metric=True)]

        def record(s: int, f: Params) -> None:
            curve.append(self.query_loss(f, self.frozen_at(frozen, s), qx, qy, metric=True))

        self.adapt(batch.support_x, batch.support_y, steps=steps, first_order=True, on_step=record,
                   guard=self.eval_guard)  # fmt: skip
        return torch.stack(curve)

    @torch.no_grad()
    def predict_queries(self, batch: TaskBatch, *, steps: int) -> torch.Tensor:
        """``(T, Q, out)`` outputs on the query inputs after ``steps`` inner steps (as ``evaluate``
        adapts)."""
        fast, frozen = self.adapt(batch.support_x, batch.support_y, steps=steps, first_order=True,
                                  guard=self.eval_guard)  # fmt: skip
        return query_predictions(self.graph, fast, frozen, batch.query_x,
                                 vectorize=self.vectorize, chunk_size=self.chunk_size)  # fmt: skip

    @torch.no_grad()
    def export_tasks(self, batch: TaskBatch, *, steps: int | None = None) -> list[TaskExport]:
        """The graph with the meta-learned and each task's adapted weights (first order)."""
        steps = self.eval_inner_steps if steps is None else steps
        fast0, frozen = self.split_params()
        fast, last = self.adapt(
            batch.support_x, batch.support_y, steps=steps, first_order=True, guard=self.eval_guard
        )
        meta = {k: v.detach() for k, v in {**self.frozen_at(frozen, 0), **fast0}.items()}
        after = {**meta, **{k: v.detach() for k, v in last.items()}}
        return [
            TaskExport(self.graph, meta, {**after, **{k: v[t].detach() for k, v in fast.items()}})
            for t in range(batch.num_tasks)
        ]
