"""Prediction stability of a classifier on Linf balls: margin claims via CROWN on logit differences.

For ball ``i`` with top-1 class ``c`` at its centre (adapted model), ``prediction_stable[i]``
holds when ``logit_j(x) - logit_c(x) < 0`` for every other class ``j`` and every ``x`` in the
ball. The upper bounds of those ``m - 1`` differences come from one CROWN back-substitution per
network with the rows ``e_j - e_c`` (the common part of the two logits cancels before the box is
applied), intersected with the interval bound ``hi_j - lo_c``; z3 proves ``max < 0`` from the
outward-rounded bound. ``prediction_agrees[i]`` also bounds the meta network's margins for the same
class. Violations come from PGD on the ball and are kept only when the changed (or disagreeing)
top-1 class holds in exact arithmetic (:mod:`~metacompose.symbolic.exact_eval`). The refine tier
runs branch and bound on each undecided margin.
"""

from __future__ import annotations

import time

import torch
import z3

from metacompose.symbolic.branch_and_bound import branch_and_bound
from metacompose.symbolic.crown import backward, concretize_upper, net_crown
from metacompose.symbolic.diff_propagation import propagate_pair
from metacompose.symbolic.exact_eval import evaluate
from metacompose.symbolic.linear_bounds import fp_error
from metacompose.symbolic.network import Affine, Network, NetworkPair, Node
from metacompose.symbolic.objectives import Objective
from metacompose.symbolic.prover import Fact, prove
from metacompose.symbolic.results import (
    ClaimResult,
    Counterexample,
    Proved,
    Unknown,
    Violated,
)
from metacompose.symbolic.rounding import rational_upper, z3_rational
from metacompose.symbolic.spec import ExactFloat, PredictionStability

ZERO = ExactFloat(0.0)
BELOW_ZERO = -5e-324  # largest double below 0: "max <= BELOW_ZERO" proves "max < 0"


def margin_rows(classes: torch.Tensor, m: int) -> torch.Tensor:
    """``(B, m - 1, m)`` rows ``e_j - e_c`` for every ``j != c`` (``c = classes[b]``)."""
    b = classes.shape[0]
    idx = torch.arange(m).expand(b, m)
    others = idx[idx != classes.unsqueeze(1)].view(b, m - 1)
    eye = torch.eye(m, dtype=torch.float64)
    return eye[others] - eye[classes].unsqueeze(1)


def margin_upper(
    net: Network, bounds: dict, rows: torch.Tensor, xlo: torch.Tensor, xhi: torch.Tensor,
    *, deadline: float | None = None,
) -> torch.Tensor:  # fmt: skip
    """Sound upper bounds of ``rows @ net(x)`` over each box, ``(B, K)``: CROWN, intersected with
    the interval bound of the output.

    Args:
        bounds: node -> ``(lo, hi)`` forward bounds of ``net`` (copied, then tightened).
        deadline: see :func:`~metacompose.symbolic.crown.net_crown`.
    """
    bounds = dict(bounds)
    relax, mags = net_crown(net, bounds, xlo, xhi, deadline=deadline)
    up = concretize_upper(*backward(net, net.output, rows, relax, mags), xlo, xhi)
    lo, hi = bounds[net.output]
    ival = torch.einsum("bkm,bm->bk", rows.clamp(min=0), hi) + torch.einsum(
        "bkm,bm->bk", rows.clamp(max=0), lo
    )
    mag = torch.einsum("bkm,bm->bk", rows.abs(), torch.maximum(lo.abs(), hi.abs()))
    return torch.minimum(up, ival + fp_error(mag, rows.shape[-1]))


def with_margins(net: Network, c: int) -> Network:
    """``net`` followed by the exact Affine ``y -> (y_j - y_c)_{j != c}``."""
    rows = margin_rows(torch.tensor([c]), net.output_dim)[0]
    node = Node("margin", Affine(rows, torch.zeros(rows.shape[0])), (net.output,))
    return Network(input_dim=net.input_dim, nodes=[*net.nodes.values(), node], output="margin")


def certify_prediction(
    pair: NetworkPair,
    pred: PredictionStability,
    xlo: torch.Tensor,
    xhi: torch.Tensor,
    *,
    tier: str = "fast",
    timeout_s: float = 5.0,
    generator: torch.Generator | None = None,
) -> list[ClaimResult]:
    """``prediction_stable[i]`` (and ``prediction_agrees[i]``) for every box ``i`` (see module)."""
    t0 = time.perf_counter()
    if not (pair.meta.is_finite() and pair.adapted.is_finite()):
        why = Unknown("the networks have non-finite weights (e.g. a diverged inner loop)")
        names = _names(pred, xlo.shape[0])
        return [ClaimResult(n, ZERO, why, "fast", 0.0) for n in names]
    m = pair.output_dim
    centres = 0.5 * (xlo + xhi)
    with torch.no_grad():
        ca = pair.adapted(centres).argmax(1)
        cm = pair.meta(centres).argmax(1)
    end = t0 + timeout_s  # the shared pass's budget (an image network's box takes seconds)
    fwd = propagate_pair(pair, xlo, xhi, crown=False, deadline=end)
    rows = margin_rows(ca, m)
    ua = margin_upper(pair.adapted, _bounds(fwd, "adapted"), rows, xlo, xhi, deadline=end).amax(1)
    um = margin_upper(pair.meta, _bounds(fwd, "meta"), rows, xlo, xhi, deadline=end).amax(1)
    xa, va = _attack(pair.adapted, ca, xlo, xhi, generator)
    xm, _ = _attack(pair.meta, ca, xlo, xhi, generator)
    t_shared = (time.perf_counter() - t0) / max(1, xlo.shape[0])
    out = []
    for i in range(xlo.shape[0]):
        t1 = time.perf_counter() - t_shared
        c = int(ca[i])
        stable, used = _stable(
            pair, i, c, float(ua[i]), xa[i], float(va[i]), xlo, xhi, tier, timeout_s
        )
        out.append(_result(f"prediction_stable[{i}]", stable, used, t1))
        if pred.agree_with_meta:
            t1 = time.perf_counter()
            agree = _agrees(pair, i, c, int(cm[i]), stable, float(um[i]), centres[i], xa[i], xm[i])
            out.append(_result(f"prediction_agrees[{i}]", agree, "fast", t1))
    return out


def _names(pred: PredictionStability, b: int) -> list[str]:
    out = []
    for i in range(b):
        out.append(f"prediction_stable[{i}]")
        if pred.agree_with_meta:
            out.append(f"prediction_agrees[{i}]")
    return out


def _result(name: str, outcome, tier: str, t1: float) -> ClaimResult:
    return ClaimResult(name, ZERO, outcome, tier, time.perf_counter() - t1)


def _bounds(fwd: dict, which: str) -> dict:
    return {k: (getattr(p, which).lo, getattr(p, which).hi) for k, p in fwd.items()}


def _attack(net: Network, classes, xlo, xhi, gen, starts: int = 4, steps: int = 20):
    """Per box, PGD maximising ``max_{j != c} y_j - y_c``: ``(best x (B, n), value (B,))``."""
    b, n = xlo.shape
    lo = xlo.repeat_interleave(starts + 1, 0)
    hi = xhi.repeat_interleave(starts + 1, 0)
    cls = classes.repeat_interleave(starts + 1, 0)
    u = torch.rand(lo.shape, generator=gen, dtype=torch.float64)
    u.view(b, starts + 1, n)[:, 0] = 0.5
    x = lo + u * (hi - lo)
    step = 0.25 * (hi - lo)

    def value(z):
        y = net(z)
        yc = y.gather(1, cls.unsqueeze(1))
        other = y.scatter(1, cls.unsqueeze(1), float("-inf"))
        return (other - yc).amax(1)

    best_x, best_v = x.clone(), torch.full((x.shape[0],), float("-inf"), dtype=torch.float64)
    for _ in range(steps + 1):
        x = x.detach().requires_grad_(True)
        v = value(x)
        better = v.detach() > best_v
        best_x = torch.where(better.unsqueeze(1), x.detach(), best_x)
        best_v = torch.where(better, v.detach(), best_v)
        (g,) = torch.autograd.grad(v.sum(), x)
        x = torch.minimum(torch.maximum(x.detach() + step * torch.sign(g), lo), hi)
        step = step * 0.8
    k = best_v.view(b, starts + 1).argmax(1)
    rows = torch.arange(b) * (starts + 1) + k
    return best_x[rows], best_v[rows]


def _exact_top(net: Network, x: torch.Tensor) -> int | None:
    """The top-1 class of ``net`` at ``x`` if it is unique in exact arithmetic, else ``None``."""
    try:
        y = evaluate(net, x)
    except (ValueError, OverflowError):
        return None
    c = max(range(len(y)), key=lambda j: y[j][0])
    ok = all(y[c][0] > y[j][1] for j in range(len(y)) if j != c)
    return c if ok else None


def _exact_changed(net: Network, x: torch.Tensor, c: int) -> bool:
    """Whether some ``j != c`` has ``y_j >= y_c`` at ``x`` in exact arithmetic."""
    try:
        y = evaluate(net, x)
    except (ValueError, OverflowError):
        return False
    return any(y[j][0] >= y[c][1] for j in range(len(y)) if j != c)


def _prove_negative(name: str, u: float, method: str, what: str) -> Proved | Unknown:
    v = z3.Real(f"max_margin[{name}]")
    fact = Fact(
        f"bound[{name}]",
        v <= z3_rational(rational_upper(u)),
        f"max over the ball of {what} <= {u:.9g} ({method})",
    )
    return prove([fact], v < 0, method=method, bound=u)


def _stable(pair, i, c, u, x_att, v_att, xlo, xhi, tier, timeout_s):
    name = f"stable[{i}]"
    what = f"max_j logit_j - logit_{c} (adapted)"
    if u < 0:
        return _prove_negative(name, u, "crown-margin", what), "fast"
    if v_att >= 0 and _exact_changed(pair.adapted, x_att, c):
        with torch.no_grad():
            y = pair.adapted(x_att.reshape(1, -1))[0]
        note = f"PGD: top-1 class changes from {c} (margin {v_att:.6g} >= 0, exact)"
        return Violated(Counterexample(x=x_att.detach(), y=y, note=note), v_att), "fast"
    if tier == "fast":
        return Unknown(f"{name}: CROWN margin bound {u:.6g} >= 0, no attack found", bound=u), tier
    return _refine(pair, i, c, xlo[i : i + 1], xhi[i : i + 1], timeout_s, u), tier


def _refine(pair, i, c, xlo, xhi, timeout_s, u):
    """Branch and bound on each margin of the adapted network (with the margin layer appended)."""
    net = with_margins(pair.adapted, c)
    mpair = NetworkPair(meta=with_margins(pair.meta, c), adapted=net)
    budget = timeout_s / max(1, pair.output_dim - 1)
    worst = float("-inf")
    for j in range(pair.output_dim - 1):
        res = branch_and_bound(
            mpair,
            Objective("output_upper", j),
            xlo,
            xhi,
            threshold=BELOW_ZERO,
            time_budget_s=budget,
        )
        if res.status == "violated" and _exact_changed(pair.adapted, res.best_x, c):
            with torch.no_grad():
                y = pair.adapted(res.best_x.reshape(1, -1))[0]
            note = f"refine (branch and bound attack): top-1 class changes from {c}"
            return Violated(Counterexample(x=res.best_x, y=y, note=note), res.best_value)
        if res.status != "proved":
            return Unknown(
                f"stable[{i}]: branch and bound undecided (margin bound {res.upper:.6g})",
                bound=min(u, res.upper),
            )
        worst = max(worst, res.upper)
    return _prove_negative(f"stable[{i}]", worst, "refine branch-and-bound", "the margins")


def _agrees(pair, i, c, c_meta, stable, um, centre, xa, xm):
    name = f"agrees[{i}]"
    for x in (centre, xa, xm):
        with torch.no_grad():
            xb = x.reshape(1, -1)
            if int(pair.adapted(xb).argmax(1)) == int(pair.meta(xb).argmax(1)):
                continue  # no disagreement in float: skip the exact evaluation
        ta, tm = _exact_top(pair.adapted, x), _exact_top(pair.meta, x)
        if ta is not None and tm is not None and ta != tm:
            with torch.no_grad():
                y = pair.adapted(x.reshape(1, -1))[0]
            note = f"top-1 class: adapted {ta}, meta-learned {tm} (exact)"
            return Violated(Counterexample(x=x.detach(), y=y, note=note), 0.0)
    if c_meta == c and isinstance(stable, Proved) and um < 0:
        meta = _prove_negative(name, um, "crown-margin", f"max_j logit_j - logit_{c} (meta)")
        if isinstance(meta, Proved):
            facts = {**stable.certificate.facts, **meta.certificate.facts}
            used = (*stable.certificate.used, *meta.certificate.used)
            bound = max(stable.certificate.bound, um)
            return Proved(type(stable.certificate)(facts, used, "crown-margin", bound))
    return Unknown(f"{name}: not both margins certified for class {c} (meta bound {um:.6g})")
