"""Fast tier for claims over the input domain: one batched ReluDiff pass, facts proved in z3.

The domain boxes are first cut into about ``n_boxes`` equal pieces (cheap: one batched pass), the
difference and output bounds are propagated, the per-claim maximum over boxes becomes a named,
outward-rounded fact, and z3 proves the claim from it. Box centres are evaluated too, so a claim
that plainly fails is reported ``violated`` with a torch-replayed input.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import z3

from metacompose.symbolic.diff_propagation import PairBounds, propagate_pair
from metacompose.symbolic.exact_eval import exceeds
from metacompose.symbolic.network import NetworkPair
from metacompose.symbolic.objectives import Objective
from metacompose.symbolic.prover import Fact, prove
from metacompose.symbolic.results import Certificate, Counterexample, Proved, Unknown, Violated
from metacompose.symbolic.rounding import rational_upper, z3_rational
from metacompose.symbolic.spec import exact_value


def split_boxes(xlo: torch.Tensor, xhi: torch.Tensor, n_boxes: int) -> tuple:
    """Cut each box into ``k**n <= max(1, n_boxes // B)`` equal pieces (``k`` per dimension)."""
    b, n = xlo.shape
    k = max(1, math.floor(max(1, n_boxes // b) ** (1.0 / n) + 1e-9))
    if k == 1:
        return xlo, xhi
    grid = torch.stack(torch.meshgrid(*[torch.arange(k)] * n, indexing="ij"), -1).reshape(-1, n)
    t0 = grid.to(torch.float64) / k
    t1 = (grid + 1).to(torch.float64) / k
    w = (xhi - xlo).unsqueeze(1)
    lo = (xlo.unsqueeze(1) + t0 * w).reshape(-1, n)
    hi = (xlo.unsqueeze(1) + t1 * w).reshape(-1, n)
    hi = torch.where((grid == k - 1).repeat(b, 1), xhi.repeat_interleave(k**n, 0), hi)
    lo = torch.where((grid == 0).repeat(b, 1), xlo.repeat_interleave(k**n, 0), lo)
    # interior cut points are shared exactly by neighbours (same float), so the union is covered
    return lo, hi


def decide_from_bounds(
    pair: NetworkPair,
    objective: Objective,
    threshold: float,
    ob: PairBounds,
    xlo: torch.Tensor,
    xhi: torch.Tensor,
    *,
    name: str,
    method: str,
    timeout_ms: int = 5000,
) -> Proved | Violated | Unknown:
    """Prove ``objective <= threshold`` from per-box upper bounds, or refute it at box centres.

    ``threshold`` stands for its exact rational (:func:`~.spec.exact_value`): a centre refutes
    only if its exactly evaluated value exceeds it, the bound proves only if z3 finds it below.
    """
    centres = 0.5 * (xlo + xhi)
    with torch.no_grad():
        vals = objective.value(pair, centres)
    i = int(torch.argmax(vals))
    if float(vals[i]) > threshold:
        found = confirm_violation(pair, objective, threshold, centres[i], f"{name} at a box centre")
        if isinstance(found, Violated):
            return found
    ub = objective.upper(ob)
    if not bool(torch.isfinite(ub).all()):
        return Unknown(f"{name}: non-finite bound")
    u = float(ub.max())
    v = z3.Real(f"max[{name}]")
    fact = Fact(
        f"bound[{name}]",
        v <= z3_rational(rational_upper(u)),
        f"max over domain of {objective.kind}[{objective.index}] <= {u:.9g} ({method}, "
        f"{xlo.shape[0]} boxes)",
    )
    return prove(
        [fact],
        v <= z3_rational(exact_value(threshold)),
        method=method,
        bound=u,
        timeout_ms=timeout_ms,
    )


def confirm_violation(
    pair: NetworkPair, objective: Objective, threshold: float, x: torch.Tensor, what: str
) -> Violated | Unknown:
    """``Violated`` if the objective at ``x`` exceeds the exact threshold in exact (rigorously
    enclosed) arithmetic, else ``Unknown`` saying that the float value did not survive."""
    with torch.no_grad():  # the float replay a reviewer would run
        observed = float(objective.value(pair, x.reshape(1, -1))[0])
    if not math.isfinite(observed):
        return Unknown(f"{what}: the float64 replay is not finite (the networks overflow)")
    if exceeds(pair, objective, x, exact_value(threshold)):
        y = objective.witness_output(pair, x)
        note = f"{what}: {observed:.17g} (exceeds the limit in exact arithmetic)"
        return Violated(Counterexample(x=x, y=y, note=note), observed)
    return Unknown(
        f"{what}: float value {observed:.17g} is not above the limit {threshold!r} in exact "
        "arithmetic (numerically borderline)"
    )


def merge(outcomes: list) -> Proved | Violated | Unknown:
    """Conjunction of sub-claims: violated if any is, proved if all are, else unknown."""
    for o in outcomes:
        if isinstance(o, Violated):
            return o
    if all(isinstance(o, Proved) for o in outcomes):
        facts, used = {}, []
        for o in outcomes:
            facts.update(o.certificate.facts)
            used.extend(o.certificate.used)
        bounds = [o.certificate.bound for o in outcomes if o.certificate.bound is not None]
        return Proved(
            Certificate(
                facts=facts,
                used=tuple(used),
                method=outcomes[0].certificate.method,
                bound=max(bounds) if bounds else None,
            )
        )
    reasons = [o.reason for o in outcomes if isinstance(o, Unknown)]
    bounds = [o.bound for o in outcomes if isinstance(o, Unknown) and o.bound is not None]
    return Unknown("; ".join(reasons), bound=max(bounds) if bounds else None)


def finiteness(pair: NetworkPair, xlo: torch.Tensor, xhi: torch.Tensor, bounds: dict | None):
    """Prove that no node of either network can be NaN/Inf on the domain, or exhibit one."""
    centre = (0.5 * (xlo[0] + xhi[0])).reshape(1, -1)
    for which, net in (("meta", pair.meta), ("adapted", pair.adapted)):
        with torch.no_grad():
            vals = net.forward_all(centre)
        bad = [k for k, t in vals.items() if not bool(torch.isfinite(t).all())]
        if bad:
            ce = Counterexample(
                x=centre[0],
                y=vals[net.output][0],
                note=f"{which} network non-finite at node {bad[0]!r}",
            )
            return Violated(ce, float("inf"))
    if bounds is None:
        bounds = propagate_pair(pair, xlo, xhi)
    mags = [
        torch.maximum(getattr(p, w).lo.abs(), getattr(p, w).hi.abs()).max()
        for p in bounds.values()
        for w in ("meta", "adapted")
    ]
    m = float(torch.stack(mags).max())
    if not math.isfinite(m):
        return Unknown("finite: bounds are not finite (weights may overflow)")
    v = z3.Real("max_abs_value")
    fact = Fact(
        "magnitude",
        v <= z3_rational(rational_upper(m)),
        f"every node of both networks satisfies |value| <= {m:.6g} on the domain",
    )
    return prove(
        [fact], v <= z3_rational(Fraction(10) ** 300), method="interval magnitude", bound=m
    )
