"""Typed outcomes of a certification: a claim is proved, violated, unknown, or (step size) estimated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Certificate:
    """What a proof rests on.

    Args:
        facts: every named fact handed to the solver, name -> human-readable statement.
        used: the names z3 needed (its unsat core), a subset of ``facts``.
        method: how the facts were obtained (e.g. ``"reludiff"``, ``"branch-and-bound"``).
        bound: the certified value the claim was checked against (e.g. the deviation upper bound).
    """

    facts: dict[str, str]
    used: tuple[str, ...]
    method: str
    bound: float | None = None


@dataclass(frozen=True)
class Counterexample:
    """A concrete witness, already replayed in torch (float64).

    Args:
        x: the input, shape ``(n,)``; for a Lipschitz claim the first of the pair.
        x2: the second input of a Lipschitz pair, shape ``(n,)``, else ``None``.
        y: what the witness evaluates to: outputs of the adapted net, or the deviation
            ``f_adapted(x) - f_meta(x)`` for a deviation claim, shape ``(m,)``.
        note: one line saying what was measured.
    """

    x: torch.Tensor | None
    y: torch.Tensor | None
    note: str
    x2: torch.Tensor | None = None


@dataclass(frozen=True)
class Proved:
    certificate: Certificate
    status: str = field(default="proved", init=False)


@dataclass(frozen=True)
class Violated:
    counterexample: Counterexample
    observed: float
    status: str = field(default="violated", init=False)


@dataclass(frozen=True)
class Unknown:
    reason: str
    bound: float | None = None
    status: str = field(default="unknown", init=False)


@dataclass(frozen=True)
class Estimate:
    """A reported number that is *not* a proof (e.g. step size times a smoothness estimate)."""

    value: float
    note: str
    status: str = field(default="estimate", init=False)


Outcome = Proved | Violated | Unknown | Estimate


@dataclass(frozen=True)
class ClaimResult:
    """The outcome of one claim of a :class:`~metacompose.symbolic.spec.StabilitySpec`.

    Args:
        claim: e.g. ``"deviation[0]"``, ``"trust_region[body].l2"``, ``"lipschitz.l2"``.
        limit: the bound the spec states for it (``None`` for finiteness).
        outcome: proved / violated / unknown / estimate.
        tier: the tier that decided it (``"fast"``, ``"refine"``, ``"exact"``).
        seconds: wall time spent on this claim.
    """

    claim: str
    limit: float | None
    outcome: Outcome
    tier: str
    seconds: float

    @property
    def status(self) -> str:
        return self.outcome.status

    @property
    def margin(self) -> float | None:
        """``limit - certified bound`` (proved) or ``limit - observed`` (violated, negative)."""
        if self.limit is None:
            return None
        if isinstance(self.outcome, Proved) and self.outcome.certificate.bound is not None:
            return self.limit - self.outcome.certificate.bound
        if isinstance(self.outcome, Violated):
            return self.limit - self.outcome.observed
        return None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "claim": self.claim,
            "status": self.status,
            "limit": self.limit,
            "tier": self.tier,
            "seconds": self.seconds,
            "margin": self.margin,
        }
        o = self.outcome
        if isinstance(o, Proved):
            c = o.certificate
            out.update(bound=c.bound, method=c.method, facts=[c.facts[k] for k in c.used])
        elif isinstance(o, Violated):
            ce = o.counterexample
            out.update(observed=o.observed, note=ce.note)
            out["x"] = None if ce.x is None else ce.x.tolist()
            out["x2"] = None if ce.x2 is None else ce.x2.tolist()
            out["y"] = None if ce.y is None else ce.y.tolist()
        elif isinstance(o, Unknown):
            out.update(reason=o.reason, bound=o.bound)
        else:
            out.update(value=o.value, note=o.note)
        return out


@dataclass(frozen=True)
class CertificationReport:
    """All claim results for one adaptation."""

    results: tuple[ClaimResult, ...]
    seconds: float

    def by_claim(self) -> dict[str, ClaimResult]:
        return {r.claim: r for r in self.results}

    @property
    def status(self) -> str:
        """``"violated"`` if any claim is, else ``"unknown"`` if any is, else ``"proved"``."""
        statuses = {r.status for r in self.results}
        if "violated" in statuses:
            return "violated"
        if "unknown" in statuses:
            return "unknown"
        return "proved"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "seconds": self.seconds,
            "claims": [r.to_json() for r in self.results],
        }
