"""Adapt a meta-learner to tasks and certify every adaptation (meta weights vs adapted weights).

Per task the learner's own inner loop runs and the learner exports the task's graph
(:meth:`Learner.export_tasks`: hard routing for a routed learner); the meta-learned and adapted
weights become a :class:`symbolic.NetworkPair` and :func:`metacompose.symbolic.certify` checks the
spec. Every ``violated`` claim's counterexample is then
replayed on the real ``ModuleGraph`` (float64 ``functional_call``, not the IR) and kept only if it
reproduces; otherwise the claim becomes ``unknown``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from metacompose.algorithms.learner import Learner
from metacompose.graph import ModuleGraph
from metacompose.symbolic import (
    BoxDomain,
    CertificationReport,
    ClaimResult,
    NonFiniteError,
    StabilitySpec,
    Unknown,
    Violated,
    certify,
)
from metacompose.symbolic.spec import per_output
from metacompose.tasks.base import TaskBatch
from metacompose.verify.convert import Params, module_params, pair_from_params


@dataclass
class TaskAdaptation:
    """One task's adaptation, ready to certify.

    Attributes:
        graph: the task's model graph (a routed learner's export for this task).
        meta: full parameter dict before adaptation (detached, no task dimension).
        adapted: full parameter dict after adaptation.
        support_x: ``(K, n)`` support inputs; query_x: ``(Q, n)`` query inputs.
        choice: slot -> candidate for a routed learner, else empty.
    """

    graph: ModuleGraph
    meta: Params
    adapted: Params
    support_x: torch.Tensor
    query_x: torch.Tensor
    choice: dict[str, int]


def adapt_tasks(
    learner: Learner, batch: TaskBatch, *, steps: int | None = None
) -> list[TaskAdaptation]:
    """Adapt to every task of ``batch`` (``steps`` inner steps; default ``eval_inner_steps``) and
    take each task's exported graph (:meth:`Learner.export_tasks`)."""
    flat = batch.support_x.reshape(batch.num_tasks, batch.support_x.shape[1], -1)
    qflat = batch.query_x.reshape(batch.num_tasks, batch.query_x.shape[1], -1)
    exports = learner.export_tasks(batch, steps=steps)
    return [
        TaskAdaptation(e.graph, e.meta, e.adapted, flat[t], qflat[t], e.choice)
        for t, e in enumerate(exports)
    ]


def certify_adaptation(
    a: TaskAdaptation,
    spec: StabilitySpec,
    *,
    tier: str = "fast",
    timeout_s: float = 5.0,
    points: str = "query",
    seed: int = 0,
) -> CertificationReport:
    """Certify one adaptation; violations are replayed on ``a.graph`` before being kept.

    Args:
        points: centres of an Linf-ball domain given without points: ``"query"`` or
            ``"support"`` inputs of the task.

    Raises:
        UnsupportedModuleError: the graph has no exact IR.
    """
    pair = pair_from_params(a.graph, a.meta, a.adapted)
    centres = a.query_x if points == "query" else a.support_x
    t0 = time.perf_counter()
    try:
        report = certify(
            pair,
            spec,
            tier=tier,
            points=centres.to(torch.float64),
            module_params=module_params(a.graph, a.meta, a.adapted),
            timeout_s=timeout_s,
            seed=seed,
        )
    except NonFiniteError as e:  # the adaptation diverged: nothing can be certified
        reason = f"adaptation not certifiable: {e}"
        claim = ClaimResult("all", None, Unknown(reason), tier, time.perf_counter() - t0)
        return CertificationReport((claim,), claim.seconds)
    return replay_on_graph(report, a, spec, centres)


def graph_forward(graph: ModuleGraph, params: Params, x: torch.Tensor) -> torch.Tensor:
    """``graph`` with ``params`` on ``x`` of shape ``(B, n)``, all in float64: ``(B, m)``."""
    p = {k: v.detach().to(torch.float64) for k, v in params.items()}
    with torch.no_grad():
        return graph.apply_params(p, x.to(torch.float64))


def replay_on_graph(
    report: CertificationReport, a: TaskAdaptation, spec: StabilitySpec, centres: torch.Tensor
) -> CertificationReport:
    """Keep a ``violated`` claim only if its counterexample reproduces on the real graph."""
    results = []
    for r in report.results:
        if isinstance(r.outcome, Violated) and r.outcome.counterexample.x is not None:
            why = _replay_failure(r, a, spec, centres)
            if why is not None:
                r = ClaimResult(r.claim, r.limit, Unknown(f"{r.claim}: {why}"), r.tier, r.seconds)
        results.append(r)
    return CertificationReport(tuple(results), report.seconds)


def _in_domain(x: torch.Tensor, spec: StabilitySpec, centres: torch.Tensor) -> bool:
    d = spec.domain
    x = x.to(torch.float64)
    if isinstance(d, BoxDomain):
        lo, hi = (
            torch.tensor(d.lower, dtype=torch.float64),
            torch.tensor(d.upper, dtype=torch.float64),
        )
        tol = 1e-12 * (hi - lo).abs().clamp(min=1.0)
        return bool(((x >= lo - tol) & (x <= hi + tol)).all())
    pts = centres if d.points is None else torch.tensor(d.points, dtype=torch.float64)
    dist = (pts.to(torch.float64).reshape(pts.shape[0], -1) - x).abs().amax(1)
    return bool((dist <= d.radius * (1 + 1e-12) + 1e-300).any())


def _replay_failure(r: ClaimResult, a: TaskAdaptation, spec, centres) -> str | None:
    """``None`` when the counterexample reproduces on the ModuleGraph, else why not."""
    ce = r.outcome.counterexample
    if not _in_domain(ce.x, spec, centres) or (
        ce.x2 is not None and not _in_domain(ce.x2, spec, centres)
    ):
        return "counterexample lies outside the domain"
    x = ce.x.reshape(1, -1)
    ya = graph_forward(a.graph, a.adapted, x)[0]
    if r.claim.startswith("deviation["):
        j = int(r.claim[len("deviation[") : -1])
        got = float((ya - graph_forward(a.graph, a.meta, x)[0])[j].abs())
        ok = got > r.limit
    elif r.claim.startswith("output_range["):
        j = int(r.claim[len("output_range[") : -1])
        m = ya.shape[0]
        lo = per_output(spec.output_range.lower, m, "lower")[j]
        hi = per_output(spec.output_range.upper, m, "upper")[j]
        got = float(ya[j])
        ok = got < lo or got > hi
    elif r.claim.startswith("lipschitz."):
        p = 2 if r.claim.endswith("l2") else float("inf")
        yb = graph_forward(a.graph, a.adapted, ce.x2.reshape(1, -1))[0]
        den = float(torch.linalg.vector_norm(ce.x2.to(torch.float64) - x[0], ord=p))
        got = float(torch.linalg.vector_norm(yb - ya, ord=p)) / den if den > 0 else 0.0
        ok = got > r.limit
    elif r.claim == "finite":
        got = float("nan")
        ok = not bool(torch.isfinite(ya).all()) or not bool(
            torch.isfinite(graph_forward(a.graph, a.meta, x)).all()
        )
    else:
        return None
    return None if ok else f"counterexample not reproduced on the ModuleGraph (got {got:.6g})"
