"""Exact z3 encoding of both networks over one box (small graphs only).

Weights enter as the exact rationals their floats denote; a ReLU is ``If(z > 0, z, 0)`` unless the
sound bounds of :mod:`metacompose.symbolic.diff_propagation` already fix its phase. The claim's negation goes
to a ``simplify; solve-eqs; smt`` tactic with a timeout: ``unsat`` is a proof, ``sat`` yields a
model whose input is evaluated exactly (:mod:`~metacompose.symbolic.exact_eval`) before it is
reported, a timeout is ``unknown``. The threshold is the limit as written (its exact rational),
never its nearest double.

Networks with smooth activations have no finite exact encoding; for them the exact tier is an
interval branch and bound with rigorous (outward-rounded) bounds, run to the timeout or until
boxes shrink below a tolerance: ``proved`` when every box is below the limit, ``violated`` only
with a point whose rigorous enclosure exceeds it, else ``unknown``.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction

import torch
import z3

from metacompose.symbolic.branch_and_bound import branch_and_bound
from metacompose.symbolic.diff_propagation import propagate_pair
from metacompose.symbolic.fast_tier import confirm_violation
from metacompose.symbolic.network import INPUT, Add, Affine, Concat, Network, NetworkPair, ReLU
from metacompose.symbolic.objectives import Objective
from metacompose.symbolic.results import Certificate, Proved, Unknown, Violated
from metacompose.symbolic.rounding import float_below, z3_rational
from metacompose.symbolic.spec import exact_value


def _q(x: float) -> z3.RatNumRef:
    return z3_rational(Fraction(float(x)))


def encode_network(
    net: Network, x: list[z3.ArithRef], bounds: dict, which: str, tag: str, solver: z3.Solver
) -> tuple[list[z3.ArithRef], int, int]:
    """Add the network's semantics to ``solver``; return its output terms and ReLU counts.

    Args:
        bounds: node -> PairBounds of a single box (``B = 1``), for phase fixing.
        which: ``"meta"`` or ``"adapted"`` (which bounds to read).
        tag: prefix of the fresh z3 variables.

    Returns:
        ``(outputs, n_relus, n_fixed)``.
    """
    vals: dict[str, list] = {INPUT: x}
    n_relu = n_fixed = 0
    for name in net.order:
        nd = net.nodes[name]
        ins = [vals[i] for i in nd.inputs]
        op = nd.op
        if isinstance(op, Affine):
            w, b = op.weight.tolist(), op.bias.tolist()
            out = []
            for i, (row, bi) in enumerate(zip(w, b)):
                z = z3.Real(f"{tag}.{name}[{i}]")
                terms = [_q(wij) * v for wij, v in zip(row, ins[0]) if wij != 0.0]
                solver.add(z == z3.Sum([*terms, _q(bi)]) if terms else z == _q(bi))
                out.append(z)
            vals[name] = out
        elif isinstance(op, ReLU):
            lb = getattr(bounds[nd.inputs[0]], which)
            lo, hi = lb.lo[0].tolist(), lb.hi[0].tolist()
            out = []
            for i, z in enumerate(ins[0]):
                n_relu += 1
                if lo[i] >= 0:
                    out.append(z)
                    n_fixed += 1
                elif hi[i] <= 0:
                    out.append(z3.RealVal(0))
                    n_fixed += 1
                else:
                    r = z3.Real(f"{tag}.{name}[{i}]")
                    solver.add(r == z3.If(z > 0, z, 0))
                    if math.isfinite(lo[i]) and math.isfinite(hi[i]):  # sound bounds as lemmas
                        solver.add(z >= _q(lo[i]), z <= _q(hi[i]))
                    out.append(r)
            vals[name] = out
        elif isinstance(op, Add):
            vals[name] = [z3.Sum(list(t)) for t in zip(*ins)]
        elif isinstance(op, Concat):
            vals[name] = [v for part in ins for v in part]
        else:  # pragma: no cover - Network rejects other ops
            raise TypeError(f"unsupported op {type(op).__name__}")
    return vals[net.output], n_relu, n_fixed


def exact_check(
    pair: NetworkPair,
    objective: Objective,
    threshold: float,
    xlo: torch.Tensor,
    xhi: torch.Tensor,
    *,
    timeout_s: float = 60.0,
    max_unstable: int = 8,
) -> Proved | Violated | Unknown:
    """Decide ``objective(x) <= threshold`` for all ``x`` in the boxes ``[xlo, xhi]`` (``(B, n)``).

    ``threshold`` stands for its exact rational (:func:`~.spec.exact_value`; a ``Fraction`` is
    taken as is). Boxes are split until the sound bounds discharge them or at most
    ``max_unstable`` ReLUs (both networks together) remain undecided; those boxes go to z3, one
    fresh solver each. The answer is complete (an exact decision) unless the overall
    ``timeout_s`` runs out. Non-finite weights give ``unknown``; smooth activations and
    structured conv / max-pool nodes (not encoded in z3) go to :func:`interval_check`.
    """
    if not (pair.meta.is_finite() and pair.adapted.is_finite()):
        return Unknown("exact tier: the networks have non-finite weights")
    if not pair.meta.piecewise_linear or pair.meta.has_image_ops:  # not encoded in z3
        return interval_check(pair, objective, threshold, xlo, xhi, timeout_s=timeout_s)
    limit = exact_value(threshold)
    t0 = time.perf_counter()
    queue = list(
        zip(
            xlo.reshape(-1, pair.input_dim).to(torch.float64),
            xhi.reshape(-1, pair.input_dim).to(torch.float64),
        )
    )
    n_bound = n_z3 = 0
    while queue:
        left = timeout_s - (time.perf_counter() - t0)
        if left <= 0:
            return Unknown(f"exact tier: timeout after {timeout_s:.1f}s ({len(queue)} boxes left)")
        lo, hi = queue.pop()
        bounds = propagate_pair(pair, lo.reshape(1, -1), hi.reshape(1, -1))
        ub = float(objective.upper(bounds[pair.meta.output])[0])
        if math.isfinite(ub) and Fraction(ub) <= limit:
            n_bound += 1
            continue
        if _unstable(pair, bounds) > max_unstable and bool(
            (hi - lo).max() > 1e-9 * (1 + lo.abs().max())
        ):
            queue.extend(_halves(lo, hi))
            continue
        n_z3 += 1
        res = _solve_box(pair, objective, limit, lo, hi, bounds, left)
        if not isinstance(res, Proved):
            return res
    cert = Certificate(
        facts={"boxes": f"{n_bound} boxes discharged by sound bounds, {n_z3} by exact z3 encoding"},
        used=("boxes",),
        method="exact-z3",
        bound=float(threshold),
    )
    return Proved(cert)


def interval_check(
    pair: NetworkPair,
    objective: Objective,
    threshold: float,
    xlo: torch.Tensor,
    xhi: torch.Tensor,
    *,
    timeout_s: float = 60.0,
    min_width: float = 1e-9,
) -> Proved | Violated | Unknown:
    """Exact tier for smooth networks: interval branch and bound against the exact limit.

    Bounds are rigorous (outward rounding, see :mod:`~metacompose.symbolic.activations`), so a
    fully pruned search is a proof; boxes narrower than ``min_width`` (relative) that are still
    undecided, or the timeout, give ``unknown``.
    """
    limit = exact_value(threshold)
    res = branch_and_bound(
        pair,
        objective,
        xlo.reshape(-1, pair.input_dim).to(torch.float64),
        xhi.reshape(-1, pair.input_dim).to(torch.float64),
        threshold=float_below(limit),
        time_budget_s=timeout_s,
        min_width=min_width,
    )
    name = f"{objective.kind}[{objective.index}]"
    if res.status == "violated":
        return confirm_violation(pair, objective, threshold, res.best_x, f"{name}: search found")
    if res.status == "proved" and math.isfinite(res.upper) and Fraction(res.upper) <= limit:
        cert = Certificate(
            facts={
                "boxes": f"{res.n_boxes} boxes bounded with rigorous interval/linear bounds; "
                f"max <= {res.upper:.17g} <= limit"
            },
            used=("boxes",),
            method="exact-interval-bnb",
            bound=res.upper,
        )
        return Proved(cert)
    return Unknown(
        f"exact tier (smooth activations, interval branch and bound): undecided after "
        f"{res.seconds:.1f}s ({res.n_boxes} boxes; bound {res.upper:.17g}, best found "
        f"{res.best_value:.17g})",
        bound=res.upper,
    )


def _unstable(pair: NetworkPair, bounds: dict) -> int:
    n = 0
    for name in pair.meta.order:
        nd = pair.meta.nodes[name]
        if isinstance(nd.op, ReLU):
            for which in ("meta", "adapted"):
                lb = getattr(bounds[nd.inputs[0]], which)
                n += int(((lb.lo < 0) & (lb.hi > 0)).sum())
    return n


def _halves(lo: torch.Tensor, hi: torch.Tensor) -> list:
    d = int(torch.argmax(hi - lo))
    mid = 0.5 * (lo[d] + hi[d])
    hi_l, lo_r = hi.clone(), lo.clone()
    hi_l[d], lo_r[d] = mid, mid
    return [(lo, hi_l), (lo_r, hi)]


def _solve_box(pair, objective, limit, lo, hi, bounds, timeout_s) -> Proved | Violated | Unknown:
    tactic = z3.Then(z3.Tactic("simplify"), z3.Tactic("solve-eqs"), z3.Tactic("smt"))
    solver = tactic.solver()
    solver.set("timeout", max(1, int(timeout_s * 1000)))
    x = [z3.Real(f"x[{i}]") for i in range(pair.input_dim)]
    for xi, a, b in zip(x, lo.tolist(), hi.tolist()):
        solver.add(xi >= _q(a), xi <= _q(b))
    y1, n1, f1 = encode_network(pair.meta, x, bounds, "meta", "m", solver)
    y2, n2, f2 = encode_network(pair.adapted, x, bounds, "adapted", "a", solver)
    j, t = objective.index, z3_rational(limit)
    if objective.kind == "deviation":
        d = y2[j] - y1[j]
        solver.add(z3.Or(d > t, d < -t))
    elif objective.kind == "output_upper":
        solver.add(y2[j] > t)
    else:
        solver.add(-y2[j] > t)
    res = solver.check()
    desc = f"exact encoding: {n1 + n2} ReLUs, {f1 + f2} phases fixed by bounds"
    if res == z3.unsat:
        return Proved(
            Certificate(
                facts={"encoding": desc},
                used=("encoding",),
                method="exact-z3",
                bound=float(limit),
            )
        )
    if res == z3.sat:
        model = solver.model()
        pt = torch.tensor(
            [_model_float(model, xi, a) for xi, a in zip(x, lo.tolist())], dtype=torch.float64
        )
        pt = torch.minimum(torch.maximum(pt, lo), hi)
        return confirm_violation(pair, objective, limit, pt, "z3 model, rounded to float64")
    return Unknown(f"exact tier: z3 {solver.reason_unknown()} ({desc})")


def _model_float(model: z3.ModelRef, v: z3.ArithRef, default: float) -> float:
    val = model.eval(v, model_completion=True)
    if z3.is_rational_value(val):
        return float(Fraction(val.numerator_as_long(), val.denominator_as_long()))
    return float(val.as_decimal(20).rstrip("?")) if z3.is_algebraic_value(val) else default
