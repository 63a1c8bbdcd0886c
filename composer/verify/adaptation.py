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
    Certificate,
    CertificationReport,
    ClaimResult,
    NonFiniteError,
    Proved,
    StabilitySpec,
    Unknown,
    Violated,
    certify,
)
from metacompose.symbolic.spec import per_output
from metacompose.tasks.base import TaskBatch
from metacompose.verify.convert import (
    NetworkTooLargeError,
    Params,
    UnsupportedModuleError,
    module_params,
    pair_from_params,
)
from metacompose.verify.reference import has_batch_norm, reference_forward


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

    A graph with batch norm is certified with the statistics of the task's query batch fixed
    (what the model normalises when it predicts); every proved claim states it in its facts.

    A graph without an exact IR (or too large to certify) gives one ``unknown`` claim saying why.
    """
    centres = a.query_x if points == "query" else a.support_x
    t0 = time.perf_counter()
    try:
        pair = pair_from_params(a.graph, a.meta, a.adapted, stats_x=a.query_x)
    except UnsupportedModuleError as e:  # no exact IR, or too large: nothing is certified
        why = str(e) if isinstance(e, NetworkTooLargeError) else f"no exact IR: {e}"
        claim = ClaimResult("all", None, Unknown(why), tier, time.perf_counter() - t0)
        return CertificationReport((claim,), claim.seconds)
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
    report = replay_on_graph(report, a, spec, centres)
    if has_batch_norm(a.graph):
        report = _with_fact(report, BATCH_STATS_FACT, BATCH_STATS_TEXT)
    return report


BATCH_STATS_FACT = "assumption[batch_stats]"
BATCH_STATS_TEXT = (
    "batch norm statistics are fixed at the task's query batch (mean and variance per channel, "
    "float64, through each network's own weights): the certified map is affine in them"
)


def _with_fact(report: CertificationReport, name: str, text: str) -> CertificationReport:
    out = []
    for r in report.results:
        if isinstance(r.outcome, Proved):
            c = r.outcome.certificate
            cert = Certificate({**c.facts, name: text}, (*c.used, name), c.method, c.bound)
            r = ClaimResult(r.claim, r.limit, Proved(cert), r.tier, r.seconds)
        out.append(r)
    return CertificationReport(tuple(out), report.seconds)


def graph_forward(
    graph: ModuleGraph, params: Params, x: torch.Tensor, *, stats_x: torch.Tensor | None = None
) -> torch.Tensor:
    """``graph`` with ``params`` on flat ``x`` of shape ``(B, n)``, all in float64: ``(B, m)``
    (batch norm with the statistics of ``stats_x``, see :func:`~.reference.reference_forward`)."""
    return reference_forward(graph, params, x, stats_x=stats_x)


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


def _ball_centre(spec: StabilitySpec, centres: torch.Tensor, i: int) -> torch.Tensor:
    d = spec.domain
    if isinstance(d, BoxDomain):
        lo, hi = (torch.tensor(v, dtype=torch.float64) for v in (d.lower, d.upper))
        return 0.5 * (lo + hi)
    pts = centres if d.points is None else torch.tensor(d.points)
    return pts.to(torch.float64).reshape(pts.shape[0], -1)[i]


def _replay_failure(r: ClaimResult, a: TaskAdaptation, spec, centres) -> str | None:
    """``None`` when the counterexample reproduces on the ModuleGraph, else why not."""
    ce = r.outcome.counterexample
    if not _in_domain(ce.x, spec, centres) or (
        ce.x2 is not None and not _in_domain(ce.x2, spec, centres)
    ):
        return "counterexample lies outside the domain"
    x = ce.x.reshape(1, -1)

    def fwd(params: Params, z: torch.Tensor) -> torch.Tensor:
        return graph_forward(a.graph, params, z.reshape(1, -1), stats_x=a.query_x)[0]

    ya = fwd(a.adapted, x)
    if r.claim.startswith("prediction_stable["):
        i = int(r.claim[len("prediction_stable[") : -1])
        c = int(fwd(a.adapted, _ball_centre(spec, centres, i)).argmax())
        others = torch.cat([ya[:c], ya[c + 1 :]])
        got = float((others - ya[c]).max())
        ok = got >= 0
    elif r.claim.startswith("prediction_agrees["):
        got = float(int(ya.argmax()) != int(fwd(a.meta, x).argmax()))
        ok = got == 1.0
    elif r.claim.startswith("deviation["):
        j = int(r.claim[len("deviation[") : -1])
        got = float((ya - fwd(a.meta, x))[j].abs())
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
        yb = fwd(a.adapted, ce.x2)
        den = float(torch.linalg.vector_norm(ce.x2.to(torch.float64) - x[0], ord=p))
        got = float(torch.linalg.vector_norm(yb - ya, ord=p)) / den if den > 0 else 0.0
        ok = got > r.limit
    elif r.claim == "finite":
        got = float("nan")
        ok = not bool(torch.isfinite(ya).all()) or not bool(torch.isfinite(fwd(a.meta, x)).all())
    else:
        return None
    return None if ok else f"counterexample not reproduced on the ModuleGraph (got {got:.6g})"
