"""Certify one adaptation (a :class:`NetworkPair`) against a :class:`StabilitySpec`, by tier.

``fast`` (milliseconds): weight-change norms, composed operator norms, finiteness, one batched
ReluDiff pass for deviation and output range, each claim proved in z3 from outward-rounded facts.
``refine`` (seconds): claims the fast tier leaves ``unknown`` go to branch and bound (deviation,
output range) or a difference-quotient attack (Lipschitz). ``exact``: they go to the exact z3
encoding instead (small networks only). Sound or silent: doubt is ``unknown``, and every
``violated`` carries an input replayed in torch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import z3

from metacompose.symbolic.branch_and_bound import branch_and_bound
from metacompose.symbolic.diff_propagation import propagate_pair
from metacompose.symbolic.exact_tier import exact_check
from metacompose.symbolic.fast_tier import (
    confirm_violation,
    decide_from_bounds,
    finiteness,
    merge,
    split_boxes,
)
from metacompose.symbolic.lipschitz import certify_lipschitz
from metacompose.symbolic.lipschitz_attack import lipschitz_attack
from metacompose.symbolic.network import NetworkPair
from metacompose.symbolic.objectives import Objective
from metacompose.symbolic.prediction import certify_prediction
from metacompose.symbolic.prover import Fact, prove
from metacompose.symbolic.results import (
    CertificationReport,
    ClaimResult,
    Unknown,
)
from metacompose.symbolic.rounding import float_below, rational_upper, z3_rational
from metacompose.symbolic.spec import StabilitySpec, domain_boxes, exact_value, per_output
from metacompose.symbolic.step_size import step_size_estimate
from metacompose.symbolic.trust_region import certify_trust_region

TIERS = ("fast", "refine", "exact")
ModuleParams = dict[str, tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]]


def certify(
    pair: NetworkPair,
    spec: StabilitySpec,
    *,
    tier: str = "fast",
    points: torch.Tensor | None = None,
    module_params: ModuleParams | None = None,
    timeout_s: float = 5.0,
    fast_boxes: int = 64,
    seed: int = 0,
) -> CertificationReport:
    """Check every claim of ``spec`` for the adaptation ``pair``.

    Args:
        pair: meta-learned and adapted networks.
        spec: the claims.
        tier: ``"fast"``, ``"refine"`` or ``"exact"`` (the latter two start with ``fast``).
        points: ``(P, n)`` centres for an Linf-ball domain given without points.
        module_params: module name -> (meta tensors, adapted tensors) for trust regions; by
            default ``pair.module_params()`` (Affine weights grouped by node-name prefix).
        timeout_s: budget per claim for the refine / exact tiers, and for the shared fast pass
            over an image network (boxes it does not reach keep interval bounds).
        fast_boxes: pieces the domain is cut into for the fast pass.
        seed: seeds the attacks' random starts.

    Raises:
        ValueError: unknown tier, a trust region naming a module without parameters, or a
            spec whose dimensions do not match the networks.
    """
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; expected one of {TIERS}")
    t_all = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    xlo, xhi = domain_boxes(spec.domain, points)
    if xlo.shape[1] != pair.input_dim:
        raise ValueError(
            f"{spec.source}: domain has {xlo.shape[1]} dims, network input has {pair.input_dim}"
        )
    if spec.prediction is not None and pair.output_dim < 2:
        raise ValueError(
            f"{spec.source}: prediction: a claim about the top-1 class needs a classifier (2 or "
            f"more outputs); this network has {pair.output_dim} output"
        )
    params = module_params if module_params is not None else pair.module_params()
    results = [
        *_trust_region_results(spec, params),
        *_lipschitz_results(pair, spec, xlo, xhi, tier=tier, generator=gen),
        *_box_results(
            pair, spec, xlo, xhi, tier=tier, timeout_s=timeout_s, fast_boxes=fast_boxes,
            generator=gen,
        ),
    ]  # fmt: skip
    if spec.prediction is not None:
        results.extend(
            certify_prediction(
                pair, spec.prediction, xlo, xhi, tier=tier, timeout_s=timeout_s, generator=gen
            )
        )
    if spec.step_size is not None:
        results.append(_step_size_result(pair, spec, xlo, xhi, generator=gen))
    return CertificationReport(tuple(results), time.perf_counter() - t_all)


def _result(claim: str, limit, outcome, t0: float, tier: str = "fast") -> ClaimResult:
    return ClaimResult(claim, limit, outcome, tier, time.perf_counter() - t0)


def _trust_region_results(spec: StabilitySpec, params: ModuleParams) -> list[ClaimResult]:
    out = []
    for region in spec.trust_regions:
        t0 = time.perf_counter()
        if region.module not in params:
            raise ValueError(
                f"{spec.source}: trust region names module {region.module!r}; "
                f"known modules: {sorted(params)}"
            )
        outcome, _ = certify_trust_region(region, *params[region.module])
        out.append(_result(region.claim, region.bound, outcome, t0))
    return out


def _lipschitz_results(
    pair: NetworkPair, spec: StabilitySpec, xlo, xhi, *, tier: str, generator: torch.Generator
) -> list[ClaimResult]:
    """Lipschitz claims: operator-norm bounds, then (beyond the fast tier) an attack."""
    finite_weights = pair.meta.is_finite() and pair.adapted.is_finite()
    out = []
    for lip in spec.lipschitz:
        t0 = time.perf_counter()
        outcome, _ = certify_lipschitz(pair.adapted, lip.norm, lip.bound)
        used = "fast"
        if isinstance(outcome, Unknown) and tier != "fast" and finite_weights:
            found = lipschitz_attack(
                pair.adapted, lip.norm, lip.bound, xlo, xhi, generator=generator
            )
            outcome, used = (found, "refine") if found is not None else (outcome, used)
        out.append(_result(f"lipschitz.{lip.norm}", lip.bound, outcome, t0, used))
    return out


def _box_results(
    pair: NetworkPair, spec: StabilitySpec, xlo, xhi, *, tier: str, timeout_s: float,
    fast_boxes: int, generator: torch.Generator,
) -> list[ClaimResult]:  # fmt: skip
    """Finiteness, deviation and output-range claims: one fast pass over ``fast_boxes`` pieces,
    then the refine / exact tier for what it left undecided."""
    claims = _box_claims(spec, pair.output_dim)
    if not (claims or spec.finite):
        return []
    out = []
    finite_weights = pair.meta.is_finite() and pair.adapted.is_finite()
    bad_weights = Unknown("the networks have non-finite weights (e.g. a diverged inner loop)")
    t0 = time.perf_counter()
    blo, bhi = split_boxes(xlo, xhi, fast_boxes)
    bounds = propagate_pair(pair, blo, bhi, deadline=t0 + timeout_s)  # images: seconds a box
    t_pass = time.perf_counter() - t0
    if spec.finite:
        out.append(_result("finite", None, finiteness(pair, blo, bhi, bounds), t0))
    ob = bounds[pair.meta.output]
    for name, limit, subs in claims:
        t0 = time.perf_counter() - t_pass / max(1, len(claims))
        if not finite_weights:
            out.append(_result(name, limit, bad_weights, t0))
            continue
        outs = [
            decide_from_bounds(
                pair, o, thr, ob, blo, bhi, name=f"{name}:{o.kind}", method="reludiff"
            )
            for o, thr in subs
        ]
        outcome, used = merge(outs), "fast"
        if isinstance(outcome, Unknown) and tier != "fast":
            outs = [
                o2
                if not isinstance(o2, Unknown)
                else _escalate(pair, o, thr, xlo, xhi, tier, timeout_s, generator, name)
                for o2, (o, thr) in zip(outs, subs)
            ]
            outcome, used = merge(outs), tier
        out.append(_result(name, limit, outcome, t0, used))
    return out


def _step_size_result(
    pair: NetworkPair, spec: StabilitySpec, xlo, xhi, *, generator: torch.Generator
) -> ClaimResult:
    t0 = time.perf_counter()
    u = torch.rand((64, xlo.shape[1]), generator=generator, dtype=torch.float64)
    idx = torch.randint(0, xlo.shape[0], (64,), generator=generator)
    xs = xlo[idx] + u * (xhi[idx] - xlo[idx])
    est = (
        step_size_estimate(pair.meta, spec.step_size.step_size, xs)
        if pair.meta.is_finite()
        else Unknown("step_size: the meta network has non-finite weights")
    )
    return _result("step_size", 2.0, est, t0)


def _box_claims(spec: StabilitySpec, m: int) -> list:
    """(claim name, stated limit, [(objective, threshold), ...]) for deviation and output range."""
    out = []
    if spec.deviation is not None:
        for j, b in enumerate(per_output(spec.deviation.max_abs, m, "deviation.max_abs")):
            out.append((f"deviation[{j}]", b, [(Objective("deviation", j), b)]))
    if spec.output_range is not None:
        lows = per_output(spec.output_range.lower, m, "output_range.lower")
        highs = per_output(spec.output_range.upper, m, "output_range.upper")
        for j, (lo, hi) in enumerate(zip(lows, highs)):
            subs = [(Objective("output_upper", j), hi), (Objective("output_lower", j), -lo)]
            out.append((f"output_range[{j}]", None, subs))
    return out


def _escalate(pair, objective, threshold, xlo, xhi, tier, timeout_s, gen, name):
    if tier == "exact":
        return exact_check(pair, objective, threshold, xlo, xhi, timeout_s=timeout_s)
    res = branch_and_bound(
        pair,
        objective,
        xlo,
        xhi,
        threshold=float_below(exact_value(threshold)),
        time_budget_s=timeout_s,
        generator=gen,
    )
    return from_branch_and_bound(pair, objective, threshold, res, name)


def from_branch_and_bound(pair, objective, threshold, res, name):
    """Turn a :class:`BranchAndBoundResult` into a typed outcome (a counterexample is kept only
    if it exceeds the exact threshold in exact arithmetic)."""
    if res.status == "violated":
        return confirm_violation(pair, objective, threshold, res.best_x, f"{name}: attack found")
    if res.status == "proved":
        v = z3.Real(f"max[{name}]")
        fact = Fact(
            f"bnb[{name}]",
            v <= z3_rational(rational_upper(res.upper)),
            f"max of {objective.kind}[{objective.index}] <= {res.upper:.9g} "
            f"(branch and bound, {res.n_boxes} boxes)",
        )
        return prove(
            [fact],
            v <= z3_rational(exact_value(threshold)),
            method="branch-and-bound",
            bound=res.upper,
        )
    return Unknown(
        f"{name}: branch and bound undecided after {res.seconds:.1f}s "
        f"({res.n_boxes} boxes; bound {res.upper:.6g}, best found {res.best_value:.6g})",
        bound=res.upper,
    )
