"""``RoutedMetaLearner``: per-task composition from a module pool, then a MAML-family inner loop.

Per meta-batch the router reads each task's support set (and descriptor) and gives routing logits
and per-task modulations (FiLM, optional low-rank deltas); a routing policy
(:mod:`metacompose.router.policies`) turns them into routing weights, one policy for meta-training
and one for evaluation; optional anchors (:mod:`metacompose.router.anchors`) move each task's
modulations to a good start. Routing weights and modulations travel in the ``fast`` dict of the
functional inner loop, so everything stays vmapped over tasks. The inner loop adapts the pool's
module weights (of ``adapt_nodes``; ANIL: the sink slot); routing weights ride along with step 0.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

from metacompose.algorithms.inner_loop import (
    Params,
    adapt,
    broadcast_tasks,
    query_losses,
    query_predictions,
)
from metacompose.algorithms.inner_settings import DEFAULT_INNER, InnerLoop
from metacompose.algorithms.learner import MetaStep, Submodule, TaskExport
from metacompose.algorithms.meta_learner import InnerLoopEnforcer
from metacompose.algorithms.step_sizes import learned_step_sizes, safe_name
from metacompose.router.anchors import ModulationAnchors
from metacompose.router.hypernet import RouterHypernetwork, RouterOutput
from metacompose.router.policies.base import RoutingDecision, RoutingPolicy, RoutingProblem
from metacompose.router.pool import ModulePool, route_key
from metacompose.router.search import choice_losses, search_routes
from metacompose.tasks.base import TaskBatch

RoutedAlgorithm = Literal["maml", "fomaml", "metasgd", "anil"]
ROUTED_ALGORITHMS: tuple[str, ...] = get_args(RoutedAlgorithm)


class RoutedMetaLearner(nn.Module):
    """Router + module pool, meta-learned end to end; a :class:`~metacompose.algorithms.Learner`.

    Args:
        pool: the module pool (``self.graph``).
        router: the task encoder + hypernetwork.
        training_routing: routes each meta-training batch (relaxed, uniform or search).
        eval_routing: routes at evaluation, adaptation and export (argmax, uniform, support search
            or rules-valid selection).
        anchors: modulation anchors (``None``: none).
        algorithm: one of ``ROUTED_ALGORITHMS`` (Reptile cannot train a router: no gradient
            reaches it).
        loss: ``"mse"`` or ``"cross_entropy"``.
        inner: the inner loop (:class:`~metacompose.algorithms.inner_settings.InnerLoop`): step
            size of module weights (Meta-SGD: initial value), training / evaluation steps, first
            order (implied by ``fomaml``), vmap over tasks or a per-task loop, vmap chunk size.
        adapt_nodes: slots whose module weights are adapted (``None``: all; ANIL: the sink).
        seed: seed of the Gumbel-noise generator (its position is checkpointed).
        enforcer: certifies (and by its mode repairs) each task's adaptation as the plain learner's
            does (:mod:`metacompose.verify.enforce`), on the task's exported graph (chosen
            candidates, modulations folded in); repairs move the pool's module weights. Only hard
            routing has such a graph: a meta-training batch routed softly (relaxed, no straight
            through) is adapted without enforcement. ``None``: no enforcement.
    """

    graph = Submodule()  # the model: seen by static protocol checks (Python 3.12+)

    def __init__(
        self,
        *,
        pool: ModulePool,
        router: RouterHypernetwork,
        training_routing: RoutingPolicy,
        eval_routing: RoutingPolicy,
        anchors: ModulationAnchors | None = None,
        algorithm: RoutedAlgorithm = "maml",
        loss: str = "mse",
        inner: InnerLoop = DEFAULT_INNER,
        adapt_nodes: list[str] | None = None,
        seed: int = 0,
        enforcer: InnerLoopEnforcer | None = None,
    ) -> None:
        super().__init__()
        if algorithm not in ROUTED_ALGORITHMS:
            raise ValueError(f"routed learner supports {ROUTED_ALGORITHMS}, got {algorithm!r}")
        self.graph, self.router, self.anchors = pool, router, anchors
        self.training_routing, self.eval_routing = training_routing, eval_routing
        self.algorithm, self.loss, self.inner_lr = algorithm, loss, float(inner.lr)
        self.inner_steps, self.eval_inner_steps = int(inner.steps), int(inner.eval_steps)
        self.first_order = bool(inner.first_order) or algorithm == "fomaml"
        self.vectorize, self.chunk_size = inner.vectorize, inner.chunk_size
        if adapt_nodes is None and algorithm == "anil":
            adapt_nodes = [pool.sink]
        self.module_keys = pool.param_keys(adapt_nodes)
        if not self.module_keys:
            raise ValueError(f"adapt_nodes={adapt_nodes} adapts nothing")
        params = dict(pool.named_parameters())
        self.step_sizes = learned_step_sizes(
            {k: params[k] for k in self.module_keys} if algorithm == "metasgd" else {},
            self.inner_lr,
        )
        self.noise_generator = torch.Generator().manual_seed(int(seed))
        self.enforcer = enforcer

    # ------------------------------------------------------------------------------ routing
    def route(
        self, batch: TaskBatch, *, policy: RoutingPolicy, step: int, search_steps: int,
        search_query: bool,
    ) -> tuple[RouterOutput, RoutingDecision]:  # fmt: skip
        """The router on ``batch``, ``policy``'s decision, and anchors added to the modulations.

        ``search_steps`` / ``search_query``: how a search policy scores a joint choice (inner steps,
        and whether by the query loss or the support loss)."""
        out = self.router.read(batch)
        sizes = {s: self.graph.num_candidates[s] for s in self.graph.routed_slots}

        xs = (batch.support_x, batch.query_x if search_query else batch.support_x)
        ys = (batch.support_y, batch.query_y if search_query else batch.support_y)

        def joint_losses() -> torch.Tensor:
            fast, frozen, lrs = self.task_params(out, {})
            return self.search(fast, frozen, lrs, xs, ys, steps=search_steps)

        def picked_losses(picks: torch.Tensor) -> torch.Tensor:
            fast, frozen, lrs = self.task_params(out, {})
            return choice_losses(self.graph, fast, frozen, lrs, xs, ys, picks, steps=search_steps,
                                 loss=self.loss, vectorize=self.vectorize,
                                 chunk_size=self.chunk_size)  # fmt: skip

        problem = RoutingProblem(
            logits=out.logits, sizes=sizes, num_tasks=batch.num_tasks, like=batch.support_x,
            step=step, generator=self.noise_generator, joint_losses=joint_losses,
            choice_losses=picked_losses,
        )  # fmt: skip
        decision = policy.decide(problem)
        if self.anchors is not None:
            fast, frozen, _ = self.task_params(out, decision.weights)

            def support_loss(trial: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                return self.query_loss(trial, frozen, x, y)

            pick = self.anchors.pick(fast, batch.support_x, batch.support_y, support_loss)
            self.anchors.add(out.modulations, pick)
        return out, decision

    def eval_route(self, batch: TaskBatch) -> tuple[RouterOutput, RoutingDecision]:
        """Hard routing at evaluation (search policies score by the support loss)."""
        return self.route(
            batch, policy=self.eval_routing, step=0, search_steps=self.eval_inner_steps,
            search_query=False,
        )  # fmt: skip

    def search(self, fast: Params, frozen: Params, lrs: Params, xs, ys, *, steps: int):
        """``(K, T)`` losses of every joint choice (:func:`search_routes`)."""
        return search_routes(self.graph, fast, frozen, lrs, xs, ys, steps=steps, loss=self.loss,
                             vectorize=self.vectorize, chunk_size=self.chunk_size)[1]  # fmt: skip

    def task_params(self, out: RouterOutput, weights: dict[str, torch.Tensor]) -> tuple:
        """``(fast, frozen, lrs)`` for the inner loop: per-task tensors carry a task dimension."""
        t = out.embedding.shape[0]
        pool = dict(self.graph.named_parameters())
        fast = broadcast_tasks({k: pool[k] for k in self.module_keys}, t)
        frozen = {k: v for k, v in pool.items() if k not in fast}
        fast.update(out.modulations)
        fast.update({route_key(s): w for s, w in weights.items()})
        lrs: dict[str, torch.Tensor | float] = dict.fromkeys(fast, 0.0)
        for k in self.module_keys:
            lrs[k] = self.step_sizes[safe_name(k)] if self.step_sizes else self.inner_lr
        return fast, frozen, lrs

    # ------------------------------------------------------------------------------ inner loop
    def inner(self, fast: Params, frozen: Params, lrs: Params, x, y, *, steps: int,
              first_order: bool, on_step=None) -> Params:  # fmt: skip
        """The inner loop of this learner's pool, loss and vectorisation on ``(x, y)``."""
        return adapt(self.graph, fast, frozen, lrs, x, y, steps=steps, loss=self.loss,
                     first_order=first_order, vectorize=self.vectorize,
                     chunk_size=self.chunk_size, on_step=on_step)  # fmt: skip

    def adapt_routed(
        self, batch: TaskBatch, out: RouterOutput, decision: RoutingDecision, *, steps: int,
        first_order: bool, on_step=None,
    ) -> tuple[Params, Params, Params]:  # fmt: skip
        """Adapt a routed meta-batch; returns ``(fast_before, fast_after, frozen)``.

        With an enforcer and hard routing, every task's adapted exported graph is certified (and
        repaired by the enforcer's mode) against its meta-learned one."""
        fast, frozen, lrs = self.task_params(out, decision.weights)

        def run(f: Params, n: int, on) -> Params:
            return self.inner(f, frozen, lrs, batch.support_x, batch.support_y, steps=n,
                              first_order=first_order, on_step=on)  # fmt: skip

        hard = None if self.enforcer is None else self._hard_choice(decision)
        if hard is None:
            return fast, run(fast, steps, on_step), frozen
        choices = [{s: int(c[t]) for s, c in hard.items()} for t in range(len(out.embedding))]

        def view(t: int, params: Params):
            return self.graph.export_graph(choices[t], params)

        adapted = self.enforcer.adapt(self.graph, fast, frozen, run, steps=steps,
                                      x=batch.support_x, on_step=on_step, view=view)  # fmt: skip
        return fast, adapted, frozen

    def _hard_choice(self, decision: RoutingDecision) -> dict[str, torch.Tensor] | None:
        """Slot -> ``(T,)`` candidates when ``decision`` routes each task to one candidate per
        routed slot (one-hot weights, e.g. straight-through); ``None`` for soft routing."""
        hard = {}
        for s in self.graph.routed_slots:
            w = decision.weights[s].detach()
            c = decision.choice.get(s, w.argmax(dim=-1))
            hot = torch.nn.functional.one_hot(c, self.graph.num_candidates[s]).to(w)
            if not torch.allclose(w, hot, atol=1e-6):
                return None
            hard[s] = c
        return hard

    def adapt(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        steps: int | None = None,
        first_order: bool | None = None,
        on_step=None,
    ) -> tuple[Params, Params]:
        """Route the support sets ``(x, y)`` by the evaluation policy, adapt, return
        ``(fast, frozen)``; ``fast`` holds the routing weights and modulations too."""
        batch = TaskBatch(support_x=x, support_y=y, query_x=x[:, :0], query_y=y[:, :0])
        out, decision = self.eval_route(batch)
        steps = self.inner_steps if steps is None else steps
        first_order = self.first_order if first_order is None else first_order
        _, fast, frozen = self.adapt_routed(
            batch, out, decision, steps=steps, first_order=first_order, on_step=on_step
        )
        return fast, frozen

    def query_loss(
        self,
        fast: Params,
        frozen: Params,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        metric: bool = False,
    ) -> torch.Tensor:
        """``(T,)`` per-task query loss (or metric) of an adapted, routed state."""
        return query_losses(self.graph, fast, frozen, x, y, loss=self.loss, metric=metric,
                            vectorize=self.vectorize, chunk_size=self.chunk_size)  # fmt: skip

    # ------------------------------------------------------------------------------ outer loop
    def meta_step(self, batch: TaskBatch, *, step: int = 0) -> MetaStep:
        """Mean query loss after adaptation under the training policy at meta-iteration ``step``,
        plus the policy's penalties (routing health, or the cross-entropy to a searched choice)."""
        out, decision = self.route(
            batch, policy=self.training_routing, step=step, search_steps=self.inner_steps,
            search_query=True,
        )  # fmt: skip
        _, fast, frozen = self.adapt_routed(
            batch, out, decision, steps=self.inner_steps, first_order=self.first_order
        )
        losses = self.query_loss(fast, frozen, batch.query_x, batch.query_y)
        objective = losses.mean()
        for term in decision.penalties:
            objective = objective + term
        return MetaStep(objective=objective, query_loss=losses)

    @torch.no_grad()
    def evaluate(self, batch: TaskBatch, *, steps: int | None = None) -> torch.Tensor:
        """Query metric after 0..S inner steps with evaluation routing: ``(S + 1, T)``.

        Inner gradients are still taken (``torch.func.grad`` ignores the outer ``no_grad``)."""
        steps = self.eval_inner_steps if steps is None else steps
        out, decision = self.eval_route(batch)
        fast, frozen, _ = self.task_params(out, decision.weights)
        curve = [self.query_loss(fast, frozen, batch.query_x, batch.query_y, metric=True)]

        def record(_s: int, f: Params) -> None:
            curve.append(self.query_loss(f, frozen, batch.query_x, batch.query_y, metric=True))

        self.adapt_routed(batch, out, decision, steps=steps, first_order=True, on_step=record)
        return torch.stack(curve)

    @torch.no_grad()
    def predict_queries(self, batch: TaskBatch, *, steps: int) -> torch.Tensor:
        """``(T, Q, out)`` outputs on the query inputs after ``steps`` inner steps under
        evaluation routing (as ``evaluate`` adapts)."""
        out, decision = self.eval_route(batch)
        _, fast, frozen = self.adapt_routed(batch, out, decision, steps=steps, first_order=True)
        return query_predictions(self.graph, fast, frozen, batch.query_x,
                                 vectorize=self.vectorize, chunk_size=self.chunk_size)  # fmt: skip

    @torch.no_grad()
    def choices(self, batch: TaskBatch) -> dict[str, torch.Tensor]:
        """Hard routing decision per routed slot: ``(T,)`` candidate indices (empty if uniform)."""
        return self.eval_route(batch)[1].choice

    @torch.no_grad()
    def export_tasks(self, batch: TaskBatch, *, steps: int | None = None) -> list[TaskExport]:
        """Every task's explicit graph under evaluation routing, before and after adaptation."""
        steps = self.eval_inner_steps if steps is None else steps
        out, decision = self.eval_route(batch)
        before, after, frozen = self.adapt_routed(
            batch, out, decision, steps=steps, first_order=True
        )
        exports = []
        for t in range(batch.num_tasks):
            choice = {s: int(c[t]) for s, c in decision.choice.items()}
            one = {k: v.detach() for k, v in frozen.items()}
            graph, meta = self.graph.export_graph(choice, {**one, **_task(before, t)})
            _, adapted = self.graph.export_graph(choice, {**one, **_task(after, t)})
            exports.append(TaskExport(graph, _detach(meta), _detach(adapted), choice))
        return exports

    # The Gumbel-noise generator's position is part of the state, so a resumed run draws the same
    # noise as an uninterrupted one (saved in state_dict as ``_extra_state``; weights_only-safe).
    def get_extra_state(self) -> dict[str, torch.Tensor]:
        return {"noise_generator": self.noise_generator.get_state()}

    def set_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        self.noise_generator.set_state(state["noise_generator"])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Checkpoints written before the meta-iteration came from the trainer hold the counter
        # buffer ``meta_iterations``; the trainer's global_step now carries that count.
        state_dict.pop(prefix + "meta_iterations", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _task(params: Params, t: int) -> Params:
    return {k: v[t].detach() for k, v in params.items()}


def _detach(params: Params) -> Params:
    return {k: v.detach() for k, v in params.items()}
