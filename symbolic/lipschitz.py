"""Lipschitz upper bound of a network, composed along its DAG and proved in z3 via logarithms.

Products along paths, sums at merges: an Affine node multiplies the bound by its operator norm,
a ReLU keeps it, a smooth activation multiplies it by ``sup |f'|``, an Add or Concat sums the bounds of its inputs (for Concat this over-approximates
both the L2 ``sqrt(sum L_i^2)`` and the Linf ``max L_i``). Products stay in log space as sums of
outward-rounded logarithms (z3 decides long linear sums instantly; nonlinear products of 20+
factors time out); only at merges is a log bound turned into a plain bound by an outward ``exp``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import z3

from metacompose.symbolic import activations
from metacompose.symbolic.network import INPUT, Activation, Add, Affine, Concat, Network, ReLU
from metacompose.symbolic.operator_norms import operator_norm_upper
from metacompose.symbolic.prover import Fact, prove
from metacompose.symbolic.results import Unknown
from metacompose.symbolic.rounding import (
    NonFiniteError,
    exp_upper,
    fraction_to_float_up,
    log_lower,
    log_upper,
    rational_upper,
    z3_rational,
)
from metacompose.symbolic.spec import exact_value

MIN_NORM = (
    2.0**-1000
)  # norms are raised to this so that their logarithm exists (still an upper bound)


def lipschitz_facts(net: Network, norm: str) -> tuple[list[Fact], z3.ArithRef, Fraction]:
    """Facts bounding the log-Lipschitz constant of ``net`` in ``norm`` (``"l2"`` or ``"linf"``).

    Returns:
        ``(facts, log_lip_of_output, value)`` where the facts imply
        ``log(Lip(net)) <= log_lip_of_output <= value``.

    Raises:
        NonFiniteError: a weight is not finite or an ``exp`` overflows.
    """
    facts: list[Fact] = []
    ell = {INPUT: z3.Real(f"log_lip[{INPUT}]")}
    val = {INPUT: Fraction(0)}
    facts.append(Fact("input", ell[INPUT] == 0, "Lip(input) = 1"))
    for name in net.order:
        nd = net.nodes[name]
        v = z3.Real(f"log_lip[{name}]")
        ell[name] = v
        if isinstance(nd.op, Affine):
            n_up = operator_norm_upper(nd.op.weight, norm)
            if not math.isfinite(n_up):
                raise NonFiniteError(f"node {name!r}: weight is not finite")
            r = log_upper(Fraction(max(n_up, MIN_NORM)))
            lw = z3.Real(f"log_norm[{name}]")
            u = nd.inputs[0]
            facts.append(
                Fact(
                    f"norm[{name}]",
                    lw <= z3_rational(r),
                    f"log ||W_{name}||_{norm} <= {float(r):.6g} (||W|| <= {n_up:.6g})",
                )
            )
            facts.append(
                Fact(
                    f"path[{name}]",
                    v <= ell[u] + lw,
                    f"log Lip({name}) <= log Lip({u}) + log ||W_{name}||",
                )
            )
            val[name] = rational_upper(float(val[u] + r))
        elif isinstance(nd.op, Add | Concat):
            merged, val[name] = _merge_facts(name, nd.inputs, v, ell, val)
            facts += merged
        elif isinstance(nd.op, Activation):  # elementwise, |f'| <= c: Lip scales by c in every norm
            u = nd.inputs[0]
            c = activations.get(nd.op.kind).lip
            lc = log_upper(c)
            facts.append(
                Fact(
                    f"act[{name}]",
                    v <= ell[u] + z3_rational(lc),
                    f"Lip({name}) <= Lip({u}) * {float(c):g} (sup |{nd.op.kind}'|)",
                )
            )
            val[name] = rational_upper(float(val[u] + lc))
        elif isinstance(nd.op, ReLU):  # 1-Lipschitz in every p-norm
            u = nd.inputs[0]
            facts.append(Fact(f"relu[{name}]", v <= ell[u], f"Lip({name}) <= Lip({u}) (ReLU)"))
            val[name] = val[u]
        else:
            raise TypeError(f"node {name!r}: no Lipschitz rule for {type(nd.op).__name__}")
    return facts, ell[net.output], val[net.output]


def _merge_facts(name: str, inputs, v: z3.ArithRef, ell: dict, val: dict) -> tuple[list, Fraction]:
    """Facts for a sum or concatenation ``name`` (its Lipschitz constant is at most the sum of
    its inputs'), in log space through ``exp`` / ``log`` upper bounds; and its log-Lip value."""
    facts: list[Fact] = []
    total = Fraction(0)
    lin = []
    for u in inputs:
        e = exp_upper(val[u])
        lu = z3.Real(f"lip[{u}]@{name}")
        lin.append(lu)
        facts.append(
            Fact(
                f"exp[{u}->{name}]",
                z3.Implies(ell[u] <= z3_rational(val[u]), lu <= z3_rational(e)),
                f"log Lip({u}) <= {float(val[u]):.6g} => Lip({u}) <= {float(e):.6g}",
            )
        )
        total += e
    s = z3.Real(f"lip[{name}]")
    facts.append(Fact(f"merge[{name}]", s <= z3.Sum(lin), f"Lip({name}) <= sum of its inputs' Lip"))
    lt = log_upper(total)
    facts.append(
        Fact(
            f"log[{name}]",
            z3.Implies(s <= z3_rational(total), v <= z3_rational(lt)),
            f"Lip({name}) <= {float(total):.6g} => log Lip({name}) <= {float(lt):.6g}",
        )
    )
    return facts, lt


def certify_lipschitz(net: Network, norm: str, limit: float, *, timeout_ms: int = 5000) -> tuple:
    """Prove ``Lip_norm(net) <= limit`` from the composed operator-norm facts.

    Returns:
        ``(Proved | Unknown, certified_bound)``; the bound is ``nan`` if it could not be formed.
    """
    if net.has_image_ops:
        why = "no operator-norm rule for structured Conv2d / MaxPool2d nodes"
        return Unknown(f"lipschitz.{norm}: {why}"), float("nan")
    try:
        facts, out, value = lipschitz_facts(net, norm)
        bound = math.exp(fraction_to_float_up(value))
    except (NonFiniteError, OverflowError) as e:
        return Unknown(f"lipschitz.{norm}: {e}"), float("nan")
    if limit <= 0:
        return Unknown(f"lipschitz.{norm}: limit {limit} is not positive", bound=bound), bound
    q = log_lower(exact_value(limit))
    facts.append(Fact("limit", z3.BoolVal(True), f"log({limit}) >= {float(q):.6g}"))
    res = prove(
        facts,
        out <= z3_rational(q),
        method="operator-norm composition",
        bound=bound,
        timeout_ms=timeout_ms,
    )
    return res, bound


__all__ = ["certify_lipschitz", "lipschitz_facts"]
