"""A meta-learned update rule for the inner loop (a learned optimizer) and its ``Learner``.

:class:`LearnedUpdateRule` is one small MLP applied to every element of every adapted tensor
(shared across tensors, so it runs on any network): from the gradient, the running moments, the
parameter, log-magnitudes, the step fraction and the task's progress (:func:`~metacompose
.algorithms.learned_inner_loop.features`) it outputs a log-modulation ``u`` of a direction, a
magnitude gate and a switch between two directions. The update is

    delta = -max_step * sigmoid(scale) * (1 + t / tau) ** -alpha * tanh(k * d * exp(k * u)) * gate
    d = (1 - w) * near + w * far,   w = sigmoid(k * (MLP + linear))

with ``near`` and ``far`` two learned linear combinations of the gradient features alone
(``g / sqrt(v_hat)``, ``m_hat / sqrt(v_hat)``, ``GRAD_SCALE * g`` and Rprop's step ``s * sign``,
whose per-element step size ``s`` is optimizer state; ``near`` only those of its starting rule),
so an element whose gradient
and momentum are zero does not move (no learned drift once a task is fitted: the rule does not
wander off late, past its training horizon), ``gate = sigmoid(k * (MLP + linear))`` in (0, 1), and
``k = out_gain`` a fixed gain on every learned output (``< 1``: a meta-step changes the rule's
behaviour less, so the few hundred meta-iterations of a short budget refine the initial rule
instead of scrambling it). Every element moves by less than ``max_step`` per step at any horizon
(stable by construction), with ``scale`` a learned global scalar and a learned power-law decay in
the step ``t`` (``tau``, ``alpha >= 0``; the step-fraction feature saturates past the horizon, the
decay does not). The rule starts as tanh-squashed Adam or SGD (``near``); with ``far_lr`` it
switches, per task, to Adam with step ``far_lr`` or (``far_rule: rprop``) to Rprop whose first
step is ``far_lr`` (``far``) where its first steps made little progress (:data:`SWITCH_AT` on the
progress feature): a meta-learned init is refined by small gradient steps, a random one (far from
any solution) is optimized as Adam or Rprop does (on full-batch support sets Rprop's per-element
step sizes reach tuned Adam's 100-step loss in about half the steps). At evaluation a
guard keeps a step only if the task's support loss stays within ``guard_slack`` of its lowest so
far (:func:`~metacompose.algorithms.learned_inner_loop.unroll`).

:class:`LearnedOptimizerLearner` meta-trains the rule (and, by default, the initial weights, as
MAML does) through truncated, vmapped unrolls of the inner loop (on random networks optionally
persistent ones, :mod:`~metacompose.algorithms.rule_pool`); its adaptation is an ordinary
adaptation of the same ``ModuleGraph`` weights, so ``export_tasks`` gives before/after weights for
``metacompose verify``, and an ``enforcer`` certifies (and repairs) each adaptation from the
meta-learned weights as it does for MAML.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from metacompose.algorithms.inner_loop import (
    Params,
    broadcast_tasks,
    query_losses,
    query_predictions,
)
from metacompose.algorithms.learned_inner_loop import (
    GRAD_SCALE,
    NUM_FEATURES,
    RPROP,
    RPROP_START,
    OptState,
    unroll,
)
from metacompose.algorithms.learner import MetaStep, Submodule, TaskExport
from metacompose.algorithms.meta_learner import InnerLoopEnforcer
from metacompose.algorithms.rule_curriculum import RandomNetworks
from metacompose.algorithms.rule_pool import PersistentUnrolls
from metacompose.graph import ModuleGraph
from metacompose.tasks.base import TaskBatch, derive_seed

# The features the direction is linear in: g / sqrt(v_hat), m_hat / sqrt(v_hat), GRAD_SCALE * g,
# Rprop's step s * sign (the rest only modulate it), so that no learned offset moves a parameter
# whose gradient is zero.
DIRECTION_FEATURES = [0, 1, 7, RPROP]
PROGRESS = 6  # the per-task progress feature (learned_inner_loop.progress_feature)
# The initial switch to the far direction (far_lr > 0): sigmoid(SHARPNESS * (progress - AT)), so
# ~1 from a random init (progress ~ -0.1) and ~0 from a meta-learned one (~ -1.3 or lower) or
# before the first step (PREPARED = -3).
SWITCH_AT, SWITCH_SHARPNESS = -0.65, 10.0


class LearnedUpdateRule(nn.Module):
    """Per-element update ``(..., 9) features, step t -> (...,)``, bounded by ``max_step``.

    Args:
        hidden: MLP width (>= 1); max_step: bound on any element's change per step (> 0 and
            finite).
        out_gain: ``k``, the gain on every learned output (module docstring), in (0, 1].
        init_lr, init_rule: the initial rule is ``-init_lr * d(t) * tanh(m_hat / sqrt(v_hat))``
            (``"adam"``, needs ``init_lr < max_step / 2``) or ``-init_lr * d(t) * tanh(c g) / c``
            with ``c = GRAD_SCALE`` (``"sgd"``: SGD with step ``init_lr`` while ``|c g| << 1``,
            needs ``init_lr < c * max_step / 2``), with ``d(t) = (1 + t / 10) ** -0.05`` before
            meta-training: the ``near`` direction.
        far_lr: if > 0, the initial ``far`` direction is Adam with this step (``m_hat /
            sqrt(v_hat)``, under the same squashing), taken where the task's progress feature is
            above :data:`SWITCH_AT` (random inits); 0: ``far`` starts equal to ``near``.
        far_rule: ``"rprop"``: the initial ``far`` direction is Rprop's step (the ``rprop``
            feature of :func:`~metacompose.algorithms.learned_inner_loop.features`) times
            ``far_lr / RPROP_START``: Rprop whose first step is ``far_lr``, under the squashing.
    """

    def __init__(
        self, *, hidden: int = 16, max_step: float = 0.1, init_lr: float = 0.01,
        init_rule: Literal["adam", "sgd"] = "adam", out_gain: float = 1.0, far_lr: float = 0.0,
        far_rule: Literal["adam", "rprop"] = "adam",
    ) -> None:  # fmt: skip
        super().__init__()
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        if not 0 < max_step < math.inf:  # also refuses NaN
            raise ValueError(f"max_step must be > 0 and finite, got {max_step}")
        if not 0 < out_gain <= 1:
            raise ValueError(f"out_gain must be in (0, 1], got {out_gain}")
        self.out_gain = float(out_gain)
        if init_rule not in ("adam", "sgd"):
            raise ValueError(f"init_rule must be adam or sgd, got {init_rule!r}")
        gain = 1.0 if init_rule == "adam" else 1 / GRAD_SCALE
        if not 0 < init_lr * gain < max_step / 2:
            raise ValueError(f"init_lr must be in (0, max_step / {2 * gain:g}) for init_rule="
                             f"{init_rule}, got {init_lr}, {max_step}")  # fmt: skip
        self.max_step = float(max_step)
        if not 0 <= far_lr < max_step / 2:
            raise ValueError(f"far_lr must be in [0, max_step / 2), got {far_lr}, {max_step}")
        if far_rule not in ("adam", "rprop"):
            raise ValueError(f"far_rule must be adam or rprop, got {far_rule!r}")
        self.mlp = nn.Sequential(
            nn.Linear(NUM_FEATURES, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, 3),
        )  # fmt: skip
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        # two directions, each linear in the gradient features only (zero at a stationary point):
        # ``near`` for a start prepared for gradient steps, ``far`` for one far from any solution,
        # mixed per element by ``sigmoid(k * (MLP + switch(features)))``
        self.near = nn.Linear(len(DIRECTION_FEATURES), 1, bias=False)
        self.far = nn.Linear(len(DIRECTION_FEATURES), 1, bias=False)
        # ``near`` stays in its starting rule's family: the raw gradient (sgd), or the normalized
        # gradient and momentum (adam). Not Rprop's step, nor (sgd) a normalized feature: they do
        # not shrink as a prepared task is fitted, and a small learned share of them kept moving
        # the weights late (pilot: query MSE from the MAML init rose from step 40 to 200).
        near_mask = [0.0, 0.0, 1.0, 0.0] if init_rule == "sgd" else [1.0, 1.0, 0.0, 0.0]
        self.register_buffer("near_mask", torch.tensor(near_mask))
        self.switch = nn.Linear(NUM_FEATURES, 1)
        self.gate = nn.Linear(NUM_FEATURES, 1)
        with torch.no_grad():
            for layer in (self.near, self.far, self.switch, self.gate):
                layer.weight.zero_()
            self.gate.bias.zero_()
            # normalised momentum (Adam) or the scaled raw gradient (SGD)
            self.near.weight[0, 1 if init_rule == "adam" else 2] = 1.0 / out_gain
            if far_lr:  # Adam with step far_lr (or Rprop from step far_lr) where the first
                # steps made little progress
                unit = init_lr * gain * out_gain
                if far_rule == "adam":
                    self.far.weight[0, 1] = far_lr / unit
                else:
                    self.far.weight[0, 3] = far_lr / (RPROP_START * unit)
                self.switch.weight[0, PROGRESS] = SWITCH_SHARPNESS / out_gain
                self.switch.bias.fill_(-SWITCH_SHARPNESS * SWITCH_AT / out_gain)
            else:  # one direction
                self.far.weight.copy_(self.near.weight * self.near_mask)
        frac = 2 * init_lr * gain / max_step  # sigmoid(gate = 0) = 1/2
        self.scale = nn.Parameter(torch.tensor(math.log(frac / (1 - frac))))
        self.log_tau = nn.Parameter(torch.tensor(math.log(10.0)))
        self.decay = nn.Parameter(torch.tensor(math.log(math.expm1(0.05))))  # alpha = 0.05

    def step_size(self, t: int) -> torch.Tensor:
        """The bound at step ``t``: ``max_step * sigmoid(scale) * (1 + t / tau) ** -alpha``."""
        alpha = nn.functional.softplus(self.decay)
        return self.max_step * torch.sigmoid(self.scale) * (1 + t / self.log_tau.exp()) ** -alpha

    def forward(self, feats, g=None, p=None, v=None, t: int = 1) -> torch.Tensor:
        k, h = self.out_gain, self.mlp(feats)
        grads = feats[..., DIRECTION_FEATURES]
        w = torch.sigmoid(k * (h[..., 2] + self.switch(feats)[..., 0]))
        near = grads @ (self.near.weight[0] * self.near_mask)
        mixed = (1 - w) * near + w * self.far(grads)[..., 0]
        direction = k * mixed * torch.exp(k * h[..., 0])
        gate = torch.sigmoid(k * (h[..., 1] + self.gate(feats)[..., 0]))
        return -self.step_size(t) * torch.tanh(direction) * gate


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
        truncation: steps between truncation points (``None``: the whole unroll). A truncation
            of ``horizon`` steps or more places no truncation point in the unroll, so it is the
            same as ``None``; a run config is refused one longer than ``horizon`` on load
            (:mod:`metacompose.config.algo_section`), the learner still takes it (old runs load).
        eval_inner_steps: inner steps at evaluation.
        learn_init: meta-learn the initial weights too (else they stay at the seeded init).
        warmup: most steps taken without meta-gradient before the unroll (0: none).
        networks: fresh random networks some meta-iterations train the rule on, after the same
            warm-up, on their support loss (scale-free: over its value at the start of the
            unroll): the rule as an optimizer from scratch.
        pool: carry those networks' adaptations across meta-iterations instead (no warm-up):
            each such meta-iteration advances one by ``horizon`` steps, until ``pool.horizon``
            steps (:class:`~metacompose.algorithms.rule_pool.PersistentUnrolls`).
        guard: the slack of the evaluation guard (``None``: no guard): keep a step only if the
            task's support loss does not rise above ``guard`` times its lowest so far (1: never
            rises; > 1: non-monotone, so a momentum rule is not cut at every bump), else halve
            that task's update scale (as attributes: ``guard`` on/off and ``guard_slack``).
        enforcer: certifies (and by its mode repairs: projection, halving of the weight change,
            rollback) every adaptation that starts from the meta-learned weights (evaluation,
            export, and meta-training unrolls without warm-up on the learner's own network).
    """

    graph = Submodule()  # the model: seen by static protocol checks (Python 3.12+)

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
        networks: RandomNetworks | None = None,
        pool: PersistentUnrolls | None = None,
        guard: float | None = 1.0,
        enforcer: InnerLoopEnforcer | None = None,
    ) -> None:
        super().__init__()
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if truncation is not None and truncation < 1:
            raise ValueError(f"truncation must be >= 1 (or unset), got {truncation}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        if guard is not None and not 1.0 <= guard < math.inf:
            raise ValueError(f"guard_slack must be a finite number >= 1, got {guard}")
        self.graph = graph
        self.rule = rule
        self.loss = loss
        self.horizon = int(horizon)
        self.truncation = truncation
        self.eval_inner_steps = int(eval_inner_steps)
        self.learn_init = learn_init
        self.warmup = int(warmup)
        self.networks = networks
        self.pool = pool
        self.guard = guard is not None
        self.guard_slack = 1.0 if guard is None else float(guard)
        self.enforcer = enforcer
        self.adapt_keys = graph.param_keys()
        graph.requires_grad_(learn_init)

    def split_params(self, params: Params | None = None) -> tuple[Params, Params]:
        """``(adapted, frozen)``: every graph parameter adapts."""
        return dict(self.graph.named_parameters()) if params is None else dict(params), {}

    def adapt(
        self, x, y, *, steps=None, first_order=None, on_step=None, truncation=None, start=None,
        guard=False, graph=None,
    ):  # fmt: skip
        """Adapt support sets ``x: (T, K, ...)`` with the learned rule; returns ``(fast, {})``.

        ``start``: ``(fast, OptState)`` to continue from (default: the initial weights, step 0);
        ``graph``: another network to run the rule on (default: the learner's; needs ``start``).
        The ``enforcer`` acts only without ``start`` (an adaptation from the meta-learned weights);
        between its calls of ``run`` the optimizer state carries on (``every: step``)."""
        fast, frozen = self.split_params()
        fast, state = (broadcast_tasks(fast, x.shape[0]), None) if start is None else start
        steps = self.eval_inner_steps if steps is None else steps
        carried: list[OptState | None] = [state]

        def run(f: Params, n: int, on) -> Params:
            out, carried[0] = unroll(
                self.graph if graph is None else graph, self.rule, f, frozen, x, y, steps=n,
                horizon=self.horizon, loss=self.loss, truncation=truncation, on_step=on,
                state=carried[0], guard=guard, slack=self.guard_slack,
            )  # fmt: skip
            return out

        if self.enforcer is None or start is not None:
            return run(fast, steps, on_step), frozen
        return self.enforcer.adapt(
            self.graph, fast, frozen, run, steps=steps, x=x, on_step=on_step
        ), frozen

    def query_loss(self, fast, frozen, x, y, *, metric: bool = False) -> torch.Tensor:
        return query_losses(self.graph, fast, frozen, x, y, loss=self.loss, metric=metric)

    def meta_step(self, batch: TaskBatch, *, step: int = 0) -> MetaStep:
        """Mean over the unroll of the query loss after each step, after a warm-up of
        ``0..warmup`` steps drawn from meta-iteration ``step``, on the learner's network from its
        initial weights; or (``networks``) on a fresh random network (its random init, then the
        same warm-up), the SUPPORT loss (the rule as an optimizer from scratch) over its value at
        the start of the unroll (scale-free: random networks start at very different losses)."""
        drawn = None if self.networks is None else self.networks.draw(step, batch.support_x)
        if drawn is not None and self.pool is not None:
            return self.pooled_step(batch, step=step, drawn=drawn)
        graph, fast = drawn if drawn is not None else (self.graph, self.split_params()[0])
        fast, state = broadcast_tasks(fast, batch.num_tasks), None
        if self.warmup:
            g = torch.Generator().manual_seed(derive_seed(step, "learned-opt-warmup") % 2**63)
            t0 = int(torch.randint(0, self.warmup + 1, (1,), generator=g))
            with torch.no_grad():  # no meta-gradient through the warm-up
                fast, state = unroll(graph, self.rule, fast, {}, batch.support_x, batch.support_y,
                                     steps=t0, horizon=self.horizon, loss=self.loss)  # fmt: skip
            fast, state = {k: v.detach() for k, v in fast.items()}, state.detach()
        x, y = (
            (batch.query_x, batch.query_y) if drawn is None else (batch.support_x, batch.support_y)
        )
        losses = []

        def record(_s: int, f: Params) -> None:
            losses.append(query_losses(graph, f, {}, x, y, loss=self.loss))

        start = (fast, state) if (state is not None or drawn is not None) else None
        self.adapt(batch.support_x, batch.support_y, steps=self.horizon, on_step=record,
                   truncation=self.truncation, start=start, graph=graph)  # fmt: skip
        curve = torch.stack(losses)  # (H, T)
        objective = curve.mean()
        if drawn is not None:
            with torch.no_grad():
                at_start = query_losses(graph, fast, {}, x, y, loss=self.loss).mean()
            objective = objective / at_start.clamp_min(1e-8)
        return MetaStep(objective=objective, query_loss=curve[-1])

    def pooled_step(self, batch: TaskBatch, *, step: int, drawn: tuple[ModuleGraph, Params]
                    ) -> MetaStep:  # fmt: skip
        """Advance one of the pool's random-network adaptations by ``horizon`` steps (a fresh one
        from ``drawn`` and the batch's support sets where its slot is empty or done): the mean
        over the window of its support loss over the loss at the window's start."""
        slot, held = self.pool.take(step, lambda: (*drawn, batch.support_x, batch.support_y))
        losses = []

        def record(_s: int, f: Params) -> None:
            losses.append(query_losses(held.graph, f, {}, held.x, held.y, loss=self.loss))

        fast, state = unroll(held.graph, self.rule, held.fast, {}, held.x, held.y,
                             steps=self.horizon, horizon=self.horizon, loss=self.loss,
                             truncation=self.truncation, on_step=record, state=held.state)  # fmt: skip
        self.pool.put(slot, fast, state)
        with torch.no_grad():
            at_start = query_losses(held.graph, held.fast, {}, held.x, held.y, loss=self.loss)
        curve = torch.stack(losses)
        return MetaStep(objective=curve.mean() / at_start.mean().clamp_min(1e-8),
                        query_loss=curve[-1])  # fmt: skip

    @torch.no_grad()
    def predict_queries(self, batch: TaskBatch, *, steps: int) -> torch.Tensor:
        """``(T, Q, out)`` outputs on the query inputs after ``steps`` learned steps."""
        fast, frozen = self.adapt(batch.support_x, batch.support_y, steps=steps, guard=self.guard)
        return query_predictions(self.graph, fast, frozen, batch.query_x)

    @torch.no_grad()
    def evaluate(self, batch: TaskBatch, *, steps: int | None = None) -> torch.Tensor:
        """Query metric after 0..S learned steps: ``(S + 1, T)``."""
        fast, frozen = self.split_params()
        fast = broadcast_tasks(fast, batch.num_tasks)
        curve = [self.query_loss(fast, frozen, batch.query_x, batch.query_y, metric=True)]

        def record(_s: int, f: Params) -> None:
            curve.append(self.query_loss(f, frozen, batch.query_x, batch.query_y, metric=True))

        self.adapt(batch.support_x, batch.support_y, steps=steps, on_step=record, guard=self.guard)
        return torch.stack(curve)

    @torch.no_grad()
    def export_tasks(self, batch: TaskBatch, *, steps: int | None = None) -> list[TaskExport]:
        """The graph with the meta-learned and each task's adapted weights."""
        meta = {k: v.detach() for k, v in self.graph.named_parameters()}
        fast, _ = self.adapt(batch.support_x, batch.support_y, steps=steps, guard=self.guard)
        return [TaskExport(self.graph, meta, {k: v[t].detach() for k, v in fast.items()})
                for t in range(batch.num_tasks)]  # fmt: skip
