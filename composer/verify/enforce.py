"""Enforcement of a stability spec inside the inner loop: ``off``, ``check``, ``reject``, ``project``.

Design (see docs/verify.md): the vectorised inner loop stays as it is (``vmap`` over tasks);
certification runs *between* vmapped steps, per task, on detached float64 copies, so it needs no
collective and works unchanged on each DDP rank (every rank certifies its own tasks). ``every``
picks when: ``"end"`` certifies once after all inner steps (the rollback target of ``reject`` is
then the meta-learned parameters), ``"step"`` after every inner step (the rollback target is the
last certified step). Modes, for a task whose adaptation is not proved:

- ``check``: nothing changes; outcomes are counted in :class:`EnforcementStats`.
- ``reject``: the task's parameters are rolled back to its last certified ones.
- ``project``: the weight change is projected into every trust region (Linf: clipped; L2: scaled
  onto the ball), then shrunk by halving (``theta_meta + alpha * delta``, alpha = 1, 1/2, ...,
  ``2**-max_halvings``) until the adaptation certifies; if none does, it is rolled back.

The returned parameters stay differentiable (``meta + alpha * clip(delta)`` with ``alpha``
constant), so enforcement may run during meta-training as well as at evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from metacompose.graph import ModuleGraph
from metacompose.symbolic import NonFiniteError, StabilitySpec, certify
from metacompose.verify.convert import Params, module_params, pair_from_params

MODES = ("off", "check", "reject", "project")
EVERY = ("end", "step")
RunSteps = Callable[[Params, int, Callable | None], Params]
# (task index, one task's full parameters) -> the network to certify and its weights; e.g. a routed
# task's exported graph with its chosen candidates and folded modulations.
TaskView = Callable[[int, Params], tuple[ModuleGraph, Params]]


@dataclass
class EnforcementStats:
    """Counts over every task adaptation seen (per process / DDP rank)."""

    certifications: int = 0  # calls of metacompose.symbolic.certify
    checked: int = 0  # task adaptations checked
    proved: int = 0  # ... proved as adapted
    violated: int = 0
    unknown: int = 0
    rolled_back: int = 0  # reject, or project that could not certify
    projected: int = 0  # project: changed and then certified
    seconds: float = 0.0  # wall time spent enforcing

    def to_dict(self) -> dict:
        return asdict(self)


class Enforcer:
    """Certifies (and, by ``mode``, repairs) each task's adaptation against ``spec``.

    Args:
        spec: the claims every adaptation must satisfy.
        mode: one of ``MODES`` (``"off"`` is accepted and does nothing).
        tier: certification tier (``"fast"`` is the one meant for the inner loop).
        timeout_s: budget per claim for ``refine`` / ``exact``.
        every: ``"end"`` or ``"step"`` (see the module docstring).
        max_halvings: shrink steps tried by ``project``.
    """

    def __init__(
        self,
        *,
        spec: StabilitySpec,
        mode: str = "check",
        tier: str = "fast",
        timeout_s: float = 1.0,
        every: str = "end",
        max_halvings: int = 8,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"enforce.mode must be one of {MODES}, got {mode!r}")
        if every not in EVERY:
            raise ValueError(f"enforce.every must be one of {EVERY}, got {every!r}")
        if max_halvings < 0:
            raise ValueError(f"enforce.max_halvings must be >= 0, got {max_halvings}")
        self.spec = spec
        self.mode = mode
        self.tier = tier
        self.timeout_s = float(timeout_s)
        self.every = every
        self.max_halvings = int(max_halvings)
        self.stats = EnforcementStats()

    # ------------------------------------------------------------------------------ inner loop
    def adapt(
        self,
        graph: ModuleGraph,
        fast0: Params,
        frozen: Params,
        run: RunSteps,
        *,
        steps: int,
        x: torch.Tensor,
        on_step: Callable[[int, Params], None] | None = None,
        view: TaskView | None = None,
    ) -> Params:
        """Run ``steps`` inner steps through ``run(fast, n, on_step)`` with enforcement.

        Args:
            fast0: ``(T, ...)`` parameters before adaptation (the meta-learned ones, broadcast).
            x: ``(T, K, ...)`` support inputs (centres of an Linf-ball domain without points).
            view: certify ``view(t, params)`` instead of ``(graph, params)`` (routed learners:
                each task's exported graph); repairs still act on ``graph``'s parameters.
        """
        if self.mode == "off" or steps == 0:
            return run(fast0, steps, on_step)
        if self.every == "end":

            def inner(s: int, f: Params) -> None:
                if on_step is not None and s < steps:
                    on_step(s, f)

            fast = run(fast0, steps, inner)
            fast = self.enforce(graph, fast0, fast, frozen, last_ok=fast0, x=x, view=view)
            if on_step is not None:
                on_step(steps, fast)
            return fast
        fast = fast0
        for s in range(1, steps + 1):
            fast = self.enforce(
                graph, fast0, run(fast, 1, None), frozen, last_ok=fast, x=x, view=view
            )
            if on_step is not None:
                on_step(s, fast)
        return fast

    def enforce(
        self,
        graph: ModuleGraph,
        fast0: Params,
        fast: Params,
        frozen: Params,
        *,
        last_ok: Params,
        x: torch.Tensor,
        view: TaskView | None = None,
    ) -> Params:
        """Certify every task of ``fast`` (``(T, ...)``) against ``fast0``; repair by ``mode``
        (``view``: see :meth:`adapt`)."""
        t0 = time.perf_counter()
        num_tasks = next(iter(fast.values())).shape[0]
        frozen_d = {k: v.detach() for k, v in frozen.items()}
        rows = []
        for t in range(num_tasks):
            meta_t = {k: v[t] for k, v in fast0.items()}
            new_t = {k: v[t] for k, v in fast.items()}
            centres = x[t].reshape(x.shape[1], -1)
            check = _Check(graph, frozen_d, centres, t, view)
            status = self._status(check, meta_t, new_t)
            self.stats.checked += 1
            setattr(self.stats, status, getattr(self.stats, status) + 1)
            if status == "proved" or self.mode == "check":
                rows.append(new_t)
            elif self.mode == "project":
                rows.append(self._project(check, meta_t, new_t, last_ok))
            else:
                self.stats.rolled_back += 1
                rows.append({k: v[t] for k, v in last_ok.items()})
        self.stats.seconds += time.perf_counter() - t0
        return {k: torch.stack([r[k] for r in rows]) for k in fast}

    # ------------------------------------------------------------------------------ internals
    def _status(self, check: _Check, meta_t: Params, new_t: Params) -> str:
        meta = {**check.frozen, **{k: v.detach() for k, v in meta_t.items()}}
        adapted = {**check.frozen, **{k: v.detach() for k, v in new_t.items()}}
        if not all(bool(torch.isfinite(v).all()) for v in new_t.values()):
            return "unknown"  # non-finite weights cannot be certified (nor converted)
        graph, centres = check.graph, check.centres
        if check.view is not None:
            graph, meta = check.view(check.task, meta)
            _, adapted = check.view(check.task, adapted)
        self.stats.certifications += 1
        try:
            report = certify(
                pair_from_params(graph, meta, adapted, stats_x=centres),
                self.spec,
                tier=self.tier,
                points=centres.detach().to(torch.float64),
                module_params=module_params(graph, meta, adapted),
                timeout_s=self.timeout_s,
            )
        except NonFiniteError:  # e.g. a weight norm overflowing float64: not certifiable
            return "unknown"
        return report.status

    def _project(self, check: _Check, meta_t: Params, new_t: Params, last_ok: Params) -> Params:
        delta = project_trust_regions(self.spec, check.graph, meta_t, new_t, check.frozen)
        for h in range(self.max_halvings + 1):
            alpha = 0.5**h
            cand = {k: meta_t[k] + alpha * delta[k] for k in new_t}
            if self._status(check, meta_t, cand) == "proved":
                self.stats.projected += 1
                return cand
        self.stats.rolled_back += 1
        return {k: v[check.task] for k, v in last_ok.items()}


@dataclass(frozen=True)
class _Check:
    """What certifying one task needs besides its weights."""

    graph: ModuleGraph  # the network whose parameters are adapted (and repaired)
    frozen: Params  # its detached non-adapted parameters
    centres: torch.Tensor  # (K, D) support inputs of the task
    task: int
    view: TaskView | None  # the network actually certified (None: ``graph`` itself)


def project_trust_regions(
    spec: StabilitySpec, graph: ModuleGraph, meta_t: Params, new_t: Params, frozen: Params
) -> Params:
    """The weight change ``new - meta`` moved into every trust region of ``spec``.

    Linf regions clip the change elementwise, then L2 regions scale it onto their ball (scaling
    keeps the Linf regions satisfied). Limits are shrunk by ``1e-6`` relative so that the
    outward-rounded norms still certify. Differentiable in ``new_t`` (factors are constants).
    """
    delta = {k: new_t[k] - meta_t[k] for k in new_t}
    own = dict(graph.named_parameters())
    meta_all = {**{k: v.detach() for k, v in own.items()}, **frozen}
    meta_all.update({k: v.detach() for k, v in meta_t.items()})
    regions = sorted(spec.trust_regions, key=lambda r: r.norm != "linf")  # linf first
    for region in regions:
        keys = [k for k in delta if k.split(".")[0] == region.module]
        if not keys:
            continue
        limit = region.bound
        if region.relative:
            ms = torch.cat(
                [v.reshape(-1) for k, v in meta_all.items() if k.split(".")[0] == region.module]
            )
            limit *= float(ms.abs().max() if region.norm == "linf" else ms.norm())
        limit *= 1 - 1e-6
        if region.norm == "linf":
            for k in keys:
                delta[k] = delta[k].clamp(-limit, limit)
        else:
            n = float(torch.sqrt(sum((delta[k].detach() ** 2).sum() for k in keys)))
            if n > limit:
                for k in keys:
                    delta[k] = delta[k] * (limit / n)
    return delta


def build_enforcer(enforce_cfg) -> Enforcer | None:
    """The :class:`Enforcer` an ``enforce`` config section asks for (``None`` when off).

    Raises:
        ConfigError: a bad mode / tier / every, a missing spec, or an invalid spec file.
    """
    from metacompose.config import ConfigError
    from metacompose.symbolic import TIERS, SpecError, load_spec

    c = enforce_cfg
    if str(c.mode).lower() in ("off", "false"):  # YAML reads a bare ``off`` as false
        return None
    if c.mode not in MODES:
        raise ConfigError(f"enforce.mode: expected one of {list(MODES)}, got {c.mode!r}")
    if c.tier not in TIERS:
        raise ConfigError(f"enforce.tier: expected one of {list(TIERS)}, got {c.tier!r}")
    if c.every not in EVERY:
        raise ConfigError(f"enforce.every: expected one of {list(EVERY)}, got {c.every!r}")
    if not c.spec:
        raise ConfigError(f"enforce.spec: mode {c.mode!r} needs a stability spec YAML path")
    if c.timeout_s <= 0 or c.max_halvings < 0:
        raise ConfigError("enforce.timeout_s must be > 0 and enforce.max_halvings >= 0")
    try:
        spec = load_spec(c.spec)
    except SpecError as e:
        raise ConfigError(f"enforce.spec: {e}") from e
    return Enforcer(
        spec=spec,
        mode=c.mode,
        tier=c.tier,
        timeout_s=c.timeout_s,
        every=c.every,
        max_halvings=c.max_halvings,
    )
