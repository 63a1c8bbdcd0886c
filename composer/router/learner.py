"""``RoutedMetaLearner``: per-task composition from a module pool, then a MAML-family inner loop.

Per meta-batch: the router reads each task's support set and gives routing weights over every
slot's candidates (Gumbel-softmax, straight-through, while training; one-hot argmax at evaluation)
and per-task modulations (FiLM, optional low-rank deltas). Those per-task tensors travel in the
``fast`` dict of the foundation's functional inner loop, so everything stays vmapped over tasks.

What the inner loop adapts (``adapt``):
    ``"modules"``: the pool weights (of the ``adapt_nodes`` slots; all slots by default), as MAML;
    ``"modulations"``: the generated FiLM / low-rank tensors only (CAVIA-like context adaptation);
    ``"both"``. Routing weights are never adapted (they ride along with step size 0).
Algorithms: ``maml``, ``fomaml``, ``metasgd`` (learned step sizes for every adapted tensor) and
``anil`` (module weights of the sink slot only, unless ``adapt_nodes`` says otherwise). Reptile
cannot train a router (no gradient reaches it) and is rejected.
``routing="uniform"`` freezes routing to 1/C for every task: the no-composition baseline.

Routing search (``search_steps > 0``): for the first ``search_steps`` meta-iterations each task is
routed by the joint choice with the lowest query loss after adaptation (see
:mod:`metacompose.router.search`), and the router's logits learn that choice by cross-entropy
(weight ``search_weight``); afterwards routing is the router's own (Gumbel-softmax). Evaluation
always routes by the router alone.
"""

from __future__ import annotations

import torch
from torch import nn

from metacompose.algorithms.inner_loop import Params, adapt, broadcast_tasks
from metacompose.algorithms.meta_learner import MetaLearner, MetaStep
from metacompose.router.hypernet import RouterHypernetwork, RouterOutput, support_features
from metacompose.router.pool import ModulePool, route_key
from metacompose.router.relaxed import (
    TemperatureSchedule,
    balance_loss,
    gumbel_noise,
    hard_route,
    mean_entropy,
    relaxed_route,
)
from metacompose.router.search import route_combinations, search_routes
from metacompose.tasks.base import TaskBatch

ROUTED_ALGORITHMS = ("maml", "fomaml", "metasgd", "anil")
ADAPT_MODES = ("modules", "modulations", "both")
ROUTING_MODES = ("learned", "uniform")
EVAL_ROUTING = ("router", "search")


class RoutedMetaLearner(nn.Module):
    """Router + module pool, meta-learned end to end; same interface as ``MetaLearner``.

    Args:
        pool: the module pool (``self.graph``).
        router: the task encoder + hypernetwork.
        algorithm: one of ``ROUTED_ALGORITHMS``.
        loss: ``"mse"`` or ``"cross_entropy"``.
        n_classes: classes for one-hot targets in the encoder input (classification only).
        inner_lr: inner step size of module weights (Meta-SGD: initial value).
        modulation_lr: inner step size of generated modulations (``adapt`` in modulations/both).
        inner_steps: inner steps during meta-training.
        eval_inner_steps: inner steps at evaluation.
        adapt: one of ``ADAPT_MODES``.
        adapt_nodes: slots whose module weights are adapted (``None``: all; ANIL: the sink).
        routing: ``"learned"`` or ``"uniform"``.
        schedule: Gumbel-softmax temperature per meta-iteration.
        straight_through: hard one-hot forward with soft gradients (else soft weights).
        balance_weight: weight of the load-balancing term ``log C - H(mean routing)``.
        entropy_weight: weight of the mean per-task routing entropy (> 0: confident routing).
        first_order: first-order inner gradients (implied by ``fomaml``).
        vectorize: vmap over tasks (else a per-task Python loop).
        chunk_size: vmap at most this many tasks at once.
        seed: seed of the Gumbel noise generator.
        search_steps: meta-iterations routed by search (see module docstring; 0: never).
        search_weight: weight of the router's cross-entropy to the searched routing.
        eval_routing: hard routing at evaluation: ``"router"`` (argmax of the router's logits) or
            ``"search"`` (the joint choice with the lowest *support* loss after
            ``eval_inner_steps`` inner steps; no query data is used).
        search_noise: while searching, sample the joint choice by annealed loss (see
            :meth:`anneal_choice`) instead of taking the best.
    """

    def __init__(
        self,
        *,
        pool: ModulePool,
        router: RouterHypernetwork,
        algorithm: str = "maml",
        loss: str = "mse",
        n_classes: int = 0,
        inner_lr: float = 0.01,
        modulation_lr: float = 0.1,
        inner_steps: int = 1,
        eval_inner_steps: int = 10,
        adapt: str = "modules",
        adapt_nodes: list[str] | None = None,
        routing: str = "learned",
        schedule: TemperatureSchedule | None = None,
        straight_through: bool = True,
        balance_weight: float = 0.0,
        entropy_weight: float = 0.0,
        first_order: bool = False,
        vectorize: bool = True,
        chunk_size: int | None = None,
        seed: int = 0,
        search_steps: int = 0,
        search_weight: float = 1.0,
        eval_routing: str = "router",
        search_noise: bool = False,
        anchors: int = 0,
        anchor_init: float = 0.5,
        anchor_rounds: int = 4,
    ) -> None:
        super().__init__()
        if algorithm not in ROUTED_ALGORITHMS:
            raise ValueError(
                f"routed learner supports algorithms {ROUTED_ALGORITHMS}, got {algorithm!r}"
            )
        if adapt not in ADAPT_MODES:
            raise ValueError(f"adapt must be one of {ADAPT_MODES}, got {adapt!r}")
        if routing not in ROUTING_MODES:
            raise ValueError(f"routing must be one of {ROUTING_MODES}, got {routing!r}")
        if inner_steps < 1 or eval_inner_steps < 0:
            raise ValueError("inner_steps must be >= 1 and eval_inner_steps >= 0")
        if eval_routing not in EVAL_ROUTING:
            raise ValueError(f"eval_routing must be one of {EVAL_ROUTING}, got {eval_routing!r}")
        if anchors < 0 or anchor_init < 0 or anchor_rounds < 1:
            raise ValueError(
                f"anchors and anchor_init must be >= 0 and anchor_rounds >= 1, got {anchors}, "
                f"{anchor_init}, {anchor_rounds}"
            )
        if anchors and not router.layout:
            raise ValueError("anchors need generated modulations (router film or low_rank)")
        if anchors and (search_steps or eval_routing == "search"):
            raise ValueError(
                "anchors do not combine with routing search (search_steps, eval_routing)"
            )
        if search_steps < 0 or search_weight < 0:
            raise ValueError(
                f"search_steps and search_weight must be >= 0, got {search_steps}, {search_weight}"
            )
        self.graph = pool
        self.router = router
        self.algorithm = algorithm
        self.loss = loss
        self.n_classes = n_classes
        self.inner_lr = float(inner_lr)
        self.modulation_lr = float(modulation_lr)
        self.inner_steps = int(inner_steps)
        self.eval_inner_steps = int(eval_inner_steps)
        self.adapt_mode = adapt
        self.routing = routing
        self.schedule = schedule or TemperatureSchedule()
        self.straight_through = straight_through
        self.balance_weight = float(balance_weight)
        self.entropy_weight = float(entropy_weight)
        self.search_steps = int(search_steps)
        self.search_weight = float(search_weight)
        self.eval_routing = eval_routing
        self.rules = None  # CompositionRules: hard routing = best valid graph (metacompose.verify)
        self.search_noise = bool(search_noise)
        self.first_order = bool(first_order) or algorithm == "fomaml"
        self.vectorize = vectorize
        self.chunk_size = chunk_size
        if adapt_nodes is None and algorithm == "anil":
            adapt_nodes = [pool.sink]
        self.module_keys = pool.param_keys(adapt_nodes) if adapt != "modulations" else []
        self.mod_keys = [k for k, _ in router.layout] if adapt != "modules" else []
        if not self.module_keys and not self.mod_keys:
            raise ValueError(f"adapt={adapt!r} with adapt_nodes={adapt_nodes} adapts nothing")
        self.register_buffer("meta_iterations", torch.zeros((), dtype=torch.int64))
        self.anchor_rounds = int(anchor_rounds)
        self.anchor_slot = dict(router.layout_slot) if anchors else {}  # modulation key -> slot
        self.anchors = nn.ParameterDict(
            {
                _lr_name(k): nn.Parameter(anchor_init * torch.randn(anchors, *shape))
                for k, shape in router.layout
            }
            if anchors
            else {}
        )
        self.noise_generator = torch.Generator().manual_seed(int(seed))
        self.step_sizes = nn.ParameterDict()
        if algorithm == "metasgd":
            params = dict(pool.named_parameters())
            for k in self.module_keys:
                self.step_sizes[_lr_name(k)] = nn.Parameter(torch.full_like(params[k], inner_lr))
            for k, shape in router.layout:
                if k in self.mod_keys:
                    self.step_sizes[_lr_name(k)] = nn.Parameter(
                        torch.full(shape, self.modulation_lr)
                    )

    # ------------------------------------------------------------------------------ routing
    @property
    def temperature(self) -> float:
        return self.schedule(int(self.meta_iterations))

    @property
    def searching(self) -> bool:
        """Whether this meta-iteration routes by search (learned routing, training only)."""
        return (
            self.training
            and self.routing == "learned"
            and bool(self.graph.routed_slots)
            and int(self.meta_iterations) < self.search_steps
        )

    def encode(self, batch: TaskBatch) -> RouterOutput:
        """The router hypernetwork on the support set (and descriptor) of ``batch``."""
        return self.router(
            support_features(batch.support_x, batch.support_y, self.n_classes), batch.descriptor
        )

    def inner(self, fast: Params, frozen: Params, lrs: Params, x, y, *, steps: int,
              first_order: bool, on_step=None) -> Params:  # fmt: skip
        """The inner loop of this learner's graph, loss and vectorisation on ``(x, y)``."""
        return adapt(self.graph, fast, frozen, lrs, x, y, steps=steps, loss=self.loss,
                     first_order=first_order, vectorize=self.vectorize,
                     chunk_size=self.chunk_size, on_step=on_step)  # fmt: skip

    def search(self, fast: Params, frozen: Params, lrs: Params, xs, ys, *, steps: int):
        """:func:`search_routes` with this learner's graph, loss and vectorisation."""
        return search_routes(self.graph, fast, frozen, lrs, xs, ys, steps=steps, loss=self.loss,
                             vectorize=self.vectorize, chunk_size=self.chunk_size)  # fmt: skip

    def route(
        self, batch: TaskBatch, *, hard: bool
    ) -> tuple[RouterOutput, dict[str, torch.Tensor]]:
        """Router output and routing weights per routed slot, ``(T, C)`` each."""
        out = self.encode(batch)
        if hard and self.routing == "learned" and self.eval_routing == "search":
            out.logits.update(self.support_search_logits(batch, out))
        valid = None
        if hard and self.routing == "learned" and self.rules is not None:
            from metacompose.verify.routing import best_valid_choice

            logits = {s: out.logits[s] for s in self.graph.routed_slots}
            valid = best_valid_choice(self.graph, logits, self.rules)
        weights = {}
        for slot in self.graph.routed_slots:
            n, t = self.graph.num_candidates[slot], batch.num_tasks
            if self.routing == "uniform":
                weights[slot] = torch.full((t, n), 1.0 / n).to(batch.support_x)
            elif valid is not None:
                weights[slot] = torch.nn.functional.one_hot(valid[slot], n).to(out.logits[slot])
            elif hard:
                weights[slot] = hard_route(out.logits[slot])
            else:
                noise = gumbel_noise((t, n), self.noise_generator)
                weights[slot] = relaxed_route(
                    out.logits[slot],
                    tau=self.temperature,
                    noise=noise,
                    straight_through=self.straight_through,
                )
        if self.anchors:
            self.apply_anchors(batch, out, weights)
        return out, weights

    def apply_anchors(
        self, batch: TaskBatch, out: RouterOutput, weights: dict
    ) -> dict[str, torch.Tensor]:
        """Add to every task's generated modulations one anchor per modulated slot, chosen by
        coordinate descent on the support loss before any inner step (each slot in turn takes its
        best anchor with the others fixed, until no choice changes; at most ``anchor_rounds``
        rounds): a multi-start over the modulation space that composes, as the modules do, and
        reads no query data. Only the picked anchors get the meta-gradient.
        Returns slot -> ``(T,)`` int64 picks."""
        slot_of = self.anchor_slot
        slots = list(dict.fromkeys(slot_of.values()))
        n_anchors = len(next(iter(self.anchors.values())))
        t = batch.num_tasks
        pick = {s: torch.zeros(t, dtype=torch.int64, device=batch.support_x.device) for s in slots}
        with torch.no_grad():
            fast, frozen, _ = self.task_params(out, weights)

            def losses(choice: dict[str, torch.Tensor]) -> torch.Tensor:
                """Support losses ``(M, T)`` of M choices at once (slot -> ``(M, T)`` anchor
                ids), as one vmapped call over ``M * T`` tasks."""
                m = next(iter(choice.values())).shape[0]
                trial = {k: v.repeat(m, *[1] * (v.dim() - 1)) for k, v in fast.items()}
                for k, slot in slot_of.items():
                    trial[k] = trial[k] + self.anchors[_lr_name(k)][choice[slot].flatten()]
                x, y = (
                    v.repeat(m, *[1] * (v.dim() - 1)) for v in (batch.support_x, batch.support_y)
                )
                return self.query_loss(trial, frozen, x, y).view(m, t)

            every = torch.arange(n_anchors, device=batch.support_x.device)[:, None].expand(-1, t)
            for _ in range(self.anchor_rounds):
                changed = False
                for s in slots:
                    choice = {r: pick[r].expand(n_anchors, t) for r in slots}
                    choice[s] = every
                    best = losses(choice).nan_to_num(float("inf")).argmin(dim=0)
                    changed = changed or bool((best != pick[s]).any())
                    pick[s] = best
                if not changed:
                    break
        for k, slot in slot_of.items():
            out.modulations[k] = out.modulations[k] + self.anchors[_lr_name(k)][pick[slot]]
        return pick

    def support_search_logits(self, batch: TaskBatch, out: RouterOutput) -> dict:
        """Search routing scores: slot -> ``(T, C)``, minus the lowest support loss (after
        ``eval_inner_steps`` steps) among the joint choices that pick each candidate; their argmax
        is the best joint choice."""
        fast, frozen, lrs = self.task_params(out, {})
        _, losses = self.search(
            fast,
            frozen,
            lrs,
            (batch.support_x, batch.support_x),
            (batch.support_y, batch.support_y),
            steps=self.eval_inner_steps,
        )
        combos = route_combinations(
            {s: self.graph.num_candidates[s] for s in self.graph.routed_slots}
        )
        scores = {}
        for i, s in enumerate(self.graph.routed_slots):
            per = [
                losses[combos[:, i] == c].min(dim=0).values
                for c in range(self.graph.num_candidates[s])
            ]
            scores[s] = -torch.stack(per, dim=-1)
        return scores

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
            lrs[k] = self.step_sizes[_lr_name(k)] if self.step_sizes else self.inner_lr
        for k in self.mod_keys:
            lrs[k] = self.step_sizes[_lr_name(k)] if self.step_sizes else self.modulation_lr
        return fast, frozen, lrs

    # ------------------------------------------------------------------------------ inner loop
    def adapt_batch(
        self,
        batch: TaskBatch,
        *,
        steps: int | None = None,
        hard: bool = True,
        first_order: bool | None = None,
        on_step=None,
    ) -> tuple[Params, Params, Params, RouterOutput]:
        """Route and adapt a meta-batch; returns ``(fast_before, fast_after, frozen, router_out)``."""
        out, weights = self.route(batch, hard=hard)
        fast, frozen, lrs = self.task_params(out, weights)
        adapted = self.inner(
            fast,
            frozen,
            lrs,
            batch.support_x,
            batch.support_y,
            steps=self.inner_steps if steps is None else steps,
            first_order=self.first_order if first_order is None else first_order,
            on_step=on_step,
        )
        return fast, adapted, frozen, out

    def split_params(self, params: Params | None = None) -> tuple[Params, Params]:
        """``(adapted module weights, the rest of the pool)``, without routing or modulations.

        Only for callers written for ``MetaLearner``: evaluated as they are, these weights run
        the pool with uniform routing and no modulation (the router needs a support set).
        """
        params = dict(self.graph.named_parameters()) if params is None else params
        fast = {k: params[k] for k in self.module_keys}
        return fast, {k: v for k, v in params.items() if k not in fast}

    def adapt(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        steps: int | None = None,
        first_order: bool | None = None,
        on_step=None,
    ) -> tuple[Params, Params]:
        """``MetaLearner.adapt`` interface: route from the support set ``(x, y)`` (hard unless
        training), adapt, and return ``(fast, frozen)``; ``fast`` holds the per-task routing weights
        and modulations, so :meth:`query_loss` on it is the routed, adapted model."""
        batch = TaskBatch(support_x=x, support_y=y, query_x=x[:, :0], query_y=y[:, :0])
        _, fast, frozen, _ = self.adapt_batch(
            batch, steps=steps, hard=not self.training, first_order=first_order, on_step=on_step
        )
        return fast, frozen

    # the same attributes (graph, loss, vectorize, chunk_size) as MetaLearner's
    query_loss = MetaLearner.query_loss

    # ------------------------------------------------------------------------------ outer loop
    def searched_batch(self, batch: TaskBatch) -> tuple[Params, Params, RouterOutput, dict]:
        """Route every task by search, then adapt: ``(fast_after, frozen, router_out, choice)``."""
        out = self.encode(batch)
        fast, frozen, lrs = self.task_params(out, {})
        choice, losses = self.search(
            fast,
            frozen,
            lrs,
            (batch.support_x, batch.query_x),
            (batch.support_y, batch.query_y),
            steps=self.inner_steps,
        )
        if self.search_noise:
            choice = self.anneal_choice(losses)
        for s, c in choice.items():
            onehot = torch.nn.functional.one_hot(c, self.graph.num_candidates[s])
            fast[route_key(s)] = onehot.to(batch.support_x)
            lrs[route_key(s)] = 0.0
        adapted = self.inner(
            fast,
            frozen,
            lrs,
            batch.support_x,
            batch.support_y,
            steps=self.inner_steps,
            first_order=self.first_order,
        )
        return adapted, frozen, out, choice

    def anneal_choice(self, losses: torch.Tensor) -> dict[str, torch.Tensor]:
        """Sample each task's joint choice with probability ``softmax(-losses / (mean * tau))``
        (losses ``(K, T)``, normalised per task; ``tau`` the current temperature), as simulated
        annealing over structures: near random early, near the best choice once ``tau`` is low."""
        rel = losses / losses.mean(dim=0, keepdim=True).clamp_min(1e-12)
        z = -rel / self.temperature + gumbel_noise(tuple(losses.shape), self.noise_generator)
        best = route_combinations(
            {s: self.graph.num_candidates[s] for s in self.graph.routed_slots}
        )[z.argmax(dim=0)]
        return {s: best[:, i] for i, s in enumerate(self.graph.routed_slots)}

    def meta_step(self, batch: TaskBatch) -> MetaStep:
        """Mean query loss after adaptation, plus the routing-health terms (training routing), or
        the router's cross-entropy to the searched routing while searching."""
        if self.searching:
            fast, frozen, out, choice = self.searched_batch(batch)
            losses = self.query_loss(fast, frozen, batch.query_x, batch.query_y)
            ce = [torch.nn.functional.cross_entropy(out.logits[s], c) for s, c in choice.items()]
            objective = losses.mean() + self.search_weight * sum(ce) / len(ce)
            self.meta_iterations += 1
            return MetaStep(objective=objective, query_loss=losses)
        _, fast, frozen, out = self.adapt_batch(batch, hard=False)
        losses = self.query_loss(fast, frozen, batch.query_x, batch.query_y)
        objective = losses.mean()
        if self.routing == "learned" and out.logits:
            probs = [torch.softmax(lg, dim=-1) for lg in out.logits.values()]
            if self.balance_weight:
                objective = objective + self.balance_weight * sum(map(balance_loss, probs)) / len(
                    probs
                )
            if self.entropy_weight:
                objective = objective + self.entropy_weight * sum(map(mean_entropy, probs)) / len(
                    probs
                )
        if self.training:
            self.meta_iterations += 1
        return MetaStep(objective=objective, query_loss=losses)

    @torch.no_grad()
    def evaluate(self, batch: TaskBatch, *, steps: int | None = None) -> torch.Tensor:
        """Query metric after 0..S inner steps with hard routing: ``(S + 1, T)``."""
        steps = self.eval_inner_steps if steps is None else steps
        curve: list[torch.Tensor] = []
        frozen: Params = {}

        def record(_s: int, f: Params) -> None:
            curve.append(self.query_loss(f, frozen, batch.query_x, batch.query_y, metric=True))

        # Inner gradients are still taken (torch.func.grad ignores the outer no_grad).
        out, weights = self.route(batch, hard=True)
        fast, frozen_params, lrs = self.task_params(out, weights)
        frozen.update(frozen_params)
        curve.append(self.query_loss(fast, frozen, batch.query_x, batch.query_y, metric=True))
        self.inner(
            fast, frozen, lrs, batch.support_x, batch.support_y, steps=steps, first_order=True,
            on_step=record,
        )  # fmt: skip
        return torch.stack(curve)

    @torch.no_grad()
    def choices(self, batch: TaskBatch) -> dict[str, torch.Tensor]:
        """Hard routing decision per routed slot: ``(T,)`` candidate indices."""
        out, weights = self.route(batch, hard=True)
        if self.rules is not None:
            return {s: w.argmax(dim=-1) for s, w in weights.items()}
        return {s: lg.argmax(dim=-1) for s, lg in out.logits.items()}

    # The Gumbel-noise generator's position is part of the state, so a resumed run draws the same
    # noise as an uninterrupted one (saved in state_dict as ``_extra_state``; weights_only-safe).
    def get_extra_state(self) -> dict[str, torch.Tensor]:
        return {"noise_generator": self.noise_generator.get_state()}

    def set_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        self.noise_generator.set_state(state["noise_generator"])


def _lr_name(key: str) -> str:
    return key.replace(".", "__").replace("*", "all")
