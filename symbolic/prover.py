"""Prove a claim from named facts in its own scope of a z3 solver (the negation must be unsat)."""

from __future__ import annotations

import threading
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
    solver = _solver()
    solver.set("timeout", int(timeout_ms))
    solver.push()
    try:
        for f in facts:
            solver.assert_and_track(f.expr, z3.Bool(f.name))
        solver.add(z3.Not(claim))
        res = solver.check()
        # the core's names (str() pretty-prints: slow) before the scope is popped
        used = tuple(c.decl().name() for c in solver.unsat_core()) if res == z3.unsat else ()
        reason = solver.reason_unknown() if res == z3.unknown else ""
    finally:
        solver.pop()
    texts = {f.name: f.text for f in facts}
    if res == z3.unsat:
        return Proved(Certificate(facts=texts, used=used, method=method, bound=bound))
    if res == z3.sat:
        return Unknown(f"{method}: the certified bound does not imply the claim", bound=bound)
    return Unknown(f"{method}: z3 returned unknown ({reason})", bound=bound)


_LOCAL = threading.local()


def _solver() -> z3.Solver:
    """This thread's solver; each proof runs in its own ``push``/``pop`` scope, so nothing carries
    from one proof to the next (tested, also after a proof that timed out). This departs on purpose
    from the "one fresh solver per proof obligation" habit: a fresh solver's first ``check`` costs
    0.60 ms on a one-fact proof, a scope 0.24 ms, and the fast tier runs ~7 proofs per adaptation
    within its 20 ms (15.8 vs 18.4 ms median on the sinusoid checkpoint, interleaved).

    Every fact and claim here is linear real arithmetic (bounds, sums of logs, a constant times a
    norm): the QF_LRA solver decides them at about half the cost of the default tactic, and
    anything outside the logic comes back ``unknown``, never ``unsat``."""
    solver = getattr(_LOCAL, "solver", None)
    if solver is None:
        solver = _LOCAL.solver = z3.SolverFor("QF_LRA")
        solver.set("unsat_core", True)
    return solver
