"""Prove a claim from named facts with one fresh z3 solver (the claim's negation must be unsat)."""

from __future__ import annotations

from dataclasses import dataclass

import z3

from metacompose.symbolic.results import Certificate, Proved, Unknown

DEFAULT_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class Fact:
    """A named z3 assertion and its human-readable statement."""

    name: str
    expr: z3.BoolRef
    text: str


def prove(
    facts: list[Fact],
    claim: z3.BoolRef,
    *,
    method: str,
    bound: float | None = None,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> Proved | Unknown:
    """Check that ``facts`` imply ``claim``.

    Returns:
        ``Proved`` whose certificate lists all facts and the unsat core z3 used, or ``Unknown``
        when the negation is satisfiable (the facts are too weak: not a violation) or z3 gives
        up.
    """
    # Every fact and claim here is linear real arithmetic (bounds, sums of logs, a constant times
    # a norm): the QF_LRA solver decides them at about half the cost of the default tactic, and
    # anything outside the logic comes back ``unknown``, never ``unsat``.
    solver = z3.SolverFor("QF_LRA")
    solver.set("timeout", int(timeout_ms))
    solver.set("unsat_core", True)
    for f in facts:
        solver.assert_and_track(f.expr, z3.Bool(f.name))
    solver.add(z3.Not(claim))
    res = solver.check()
    texts = {f.name: f.text for f in facts}
    if res == z3.unsat:
        used = tuple(c.decl().name() for c in solver.unsat_core())  # str() pretty-prints: slow
        return Proved(Certificate(facts=texts, used=used, method=method, bound=bound))
    if res == z3.sat:
        return Unknown(f"{method}: the certified bound does not imply the claim", bound=bound)
    return Unknown(f"{method}: z3 returned unknown ({solver.reason_unknown()})", bound=bound)
