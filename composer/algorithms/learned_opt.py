"""A meta-learned update rule for the inner loop (a learned optimizer) and its ``Learner``.

:class:`LearnedUpdateRule` is one small MLP applied to every element of every adapted tensor
(shared across tensors, so it runs on any network): from the gradient, the running moments, the
parameter, log-magnitudes and the step fraction (:func:`~metacompose.algorithms.learned_inner_loop
.features`) it outputs a direction and a magnitude gate. The update is

    delta = -max_step * sigmoid(scale) * tanh(direction) * sigmoid(gate)

so every element moves by less than ``max_step`` per step at any horizon (stable by construction),
with ``scale`` a learned global scalar. A linear skip path starts the rule as tanh-squashed Adam.

:class:`LearnedOptimizerLearner` meta-trains the rule (and, by default, the initial weights, as
MAML does) through truncated, vmapped unrolls of the inner loop; its adaptation is an ordinary
adaptation of the same ``ModuleGraph`` weights, so ``export_tasks`` gives before/after weights for
``metacompose verify``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from metacompose.algorithms.inner_loop import Params, broadcast_tasks, query_losses
from metacompose.algorithms.learned_inner_loop import NUM_FEATURES, unroll
from metacompose.algorithms.learner import MetaStep, TaskExport
from metacompose.graph import ModuleGraph
from metacompose.tasks.base import TaskBatch, derive_seed


class LearnedUpdateRule(nn.Module):
    """Per-element update ``(..., 6) features -> (...,)``, bounded by ``max_step``.

    Args:
        hidden: MLP width; max_step: bound on any element's change per step; init_lr: the
            initial rule is ``-init_lr * tanh(m_hat / sqrt(v_hat))`` (needs ``init_lr < max_step/2``).
    """

    def __init__(self, *, hidden: int = 16, max_step: float = 0.1, init_lr: float = 0.01) -> None:
        super().__init__()
        if not 0 < init_lr < max_step / 2:
            raise ValueError(f"init_lr must be in (0, max_step / 2), got {init_lr}, {max_step}")
        self.max_step = float(max_step)
        self.mlp = nn.Sequential(
            nn.Linear(NUM_FEATURES, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, 2),
        )  # fmt: skip
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.skip = nn.Linear(NUM_FEATURES, 2)
        with torch.no_grad():
            self.skip.weight.zero_()
            self.skip.bias.zero_()
            self.skip.weight[0, 1] = 1.0  # direction <- normalised momentum (Adam)
        frac = 2 * init_lr / max_step  # sigmoid(gate = 0) = 1/2
        self.scale = nn.Parameter(torch.tensor(math.log(frac / (1 - frac))))

    def forward(self, feats, g=None, p=None, v=None) -> torch.Tensor:
        out = self.mlp(feats) + self.skip(feats)
        step = self.max_step * torch.sigmoid(self.scale)
        return -step * torch.tanh(out[..., 0]) * torch.sigmoid(out[..., 1])


class LearnedOptimizerLearner(nn.Module):
    """Meta-learns an update rule (and optionally the initial weights) of a ``ModuleGraph``.

    Meta-objective: the mean over the ``horizon`` unrolled steps of the mean query loss after each
    step (progress at every step, not only at the end), with the unroll truncated every
    ``truncation`` steps (parameters and optimizer state detached there). Each meta-iteration
    first takes ``0..warmup`` steps (drawn from the meta-iteration's seed) without meta-gradient,
    so the rule is trained on steps ``1..warmup + horizon``: the step-fraction feature saturates at
    the horizon, and later steps look like the ones trained past it.

    Args:
        graph: the model adapted in the inner loop (every parameter).
        rule: the learned update rule.
        loss: ``"mse"`` or ``"cross_entropy"``.
        horizon: inner steps per meta-training unroll.
        truncation: steps between truncation points (``None``: the whole unroll).
        eval_inner_steps: inner steps at evaluation.
        learn_init: meta-learn the initial weights too (else they stay at the seeded init).
        warmup: most steps taken without meta-gradient before the unroll (0: none).
    """

    def __init__(
        self,
        *,
        graph: ModuleGraph,
        rule: LearnedUpdateRule,
        loss: str = "mse",
        horizon: int = 10,
        truncation: int | None = 5,
        eval_inner_steps: int = 20,
        learn_init: bool = True,
        warmup: int = 0,
    ) -> None:
        super().__init__()
        if horizon < 1 or (truncation is not None and truncation < 1):
            raise ValueError("horizon and truncation must be >= 1")
        self.graph = graph
        self.rule = rule
        self.loss = loss
        self.horizon = int(horizon)
        self.truncation = truncation
        self.eval_inner_steps = int(eval_inner_steps)
        self.learn_init = learn_init
        self.warmup = int(warmup)
        self.adapt_keys = graph.param_keys()
        graph.requires_grad_(learn_init)

    def split_params(self, params: Params | None = None) -> tuple[Params, Params]:
        """``(adapted, frozen)``: every graph parameter adapts."""
        return dict(self.graph.named_parameters()) if params is None else dict(params), {}

    def adapt(
        self, x, y, *, steps=None, first_order=None, on_step=None, truncation=None, start=None
    ):
        """Adapt support sets ``x: (T, K, ...)`` with the learned rule; returns ``(fast, {})``.

        ``start``: ``(fast, OptState)`` to continue from (default: the initial weights, step 0)."""
        fast, frozen = self.split_params()
        fast, state = (broadcast_tasks(fast, x.shape[0]), None) if start is None else start
        steps = self.eval_inner_steps if steps is None else steps
        fast, _ = unroll(
            self.graph, self.rule, fast, frozen, x, y, steps=steps, horizon=self.horizon,
            loss=self.loss, truncation=truncation, on_step=on_step, state=state,
        )  # fmt: skip
        return fast, frozen

    def query_loss(self, fast, frozen, x, y, *, metric: bool = False) -> torch.Tensor:
        return query_losses(self.graph, fast, frozen, x, y, loss=self.loss, metric=metric)

    def meta_step(self, batch: TaskBatch, *, step: int = 0) -> MetaStep:
        """Mean over the unroll of the query loss after each step, after a warm-up of
        ``0..warmup`` steps drawn from meta-iteration ``step``."""
        start = None
        if self.warmup:
            g = torch.Generator().manual_seed(derive_seed(step, "learned-opt-warmup") % 2**63)
            t0 = int(torch.randint(0, self.warmup + 1, (1,), generator=g))
            fast, frozen = self.split_params()
            with torch.no_grad():  # no meta-gradient through the warm-up
                fast, state = unroll(
                    self.graph, self.rule, broadcast_tasks(fast, batch.num_tasks), frozen,
                    batch.support_x, batch.support_y, steps=t0, horizon=self.horizon,
                    loss=self.loss,
                )  # fmt: skip
            start = ({k: v.detach() for k, v in fast.items()}, state.detach())
        losses = []

        def record(_s: int, f: Params) -> None:
            losses.append(self.query_loss(f, {}, batch.query_x, batch.query_y))

        self.adapt(batch.support_x, batch.support_y, steps=self.horizon, on_step=record,
                   truncation=self.truncation, start=start)  # fmt: skip
        curve = torch.stack(losses)  # (H, T)
        return MetaStep(objective=curve.mean(), query_loss=curve[-1])

    @torch.no_grad()
    def evaluate(self, batch: TaskBatch, *, steps: int | None = None) -> torch.Tensor:
        """Query metric after 0..S learned steps: ``(S + 1, T)``."""
        fast, frozen = self.split_params()
        fast = broadcast_tasks(fast, batch.num_tasks)
        curve = [self.query_loss(fast, frozen, batch.query_x, batch.query_y, metric=True)]

        def record(_s: int, f: Params) -> None:
            curve.append(self.query_loss(f, frozen, batch.query_x, batch.query_y, metric=True))

        self.adapt(batch.support_x, batch.support_y, steps=steps, on_step=record)
        return torch.stack(curve)

    @torch.no_grad()
    def export_tasks(self, batch: TaskBatch, *, steps: int | None = None) -> list[TaskExport]:
        """The graph with the meta-learned and each task's adapted weights."""
        meta = {k: v.detach() for k, v in self.graph.named_parameters()}
        fast, _ = self.adapt(batch.support_x, batch.support_y, steps=steps)
        return [TaskExport(self.graph, meta, {k: v[t].detach() for k, v in fast.items()})
                for t in range(batch.num_tasks)]  # fmt: skip


def learned_opt_learner(
    *,
    graph: ModuleGraph,
    loss: str,
    eval_inner_steps: int,
    hidden: int = 16,
    max_step: float = 0.1,
    init_lr: float = 0.01,
    horizon: int = 10,
    truncation: int | None = 5,
    learn_init: bool = True,
    warmup: int = 0,
) -> LearnedOptimizerLearner:
    """The ``algo.name: learned_opt`` learner; ``algo.args`` sets the keyword arguments after
    ``eval_inner_steps`` (see :class:`LearnedUpdateRule` and :class:`LearnedOptimizerLearner`)."""
    rule = LearnedUpdateRule(hidden=hidden, max_step=max_step, init_lr=init_lr)
    return LearnedOptimizerLearner(
        graph=graph, rule=rule, loss=loss, horizon=horizon, truncation=truncation,
        eval_inner_steps=eval_inner_steps, learn_init=learn_init, warmup=warmup,
    )  # fmt: skip
