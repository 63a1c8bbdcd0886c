"""Exact-enough weight-change norms per module, proved against trust regions in z3."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import z3

from metacompose.symbolic.linear_bounds import fp_error
from metacompose.symbolic.prover import Fact, prove
from metacompose.symbolic.results import Counterexample, Unknown, Violated
from metacompose.symbolic.rounding import rational_lower, rational_upper, z3_rational
from metacompose.symbolic.spec import TrustRegion, exact_value


def _flat(ts: Sequence[torch.Tensor]) -> torch.Tensor:
    return (
        torch.cat([t.detach().reshape(-1).to(torch.float64) for t in ts]) if ts else torch.zeros(0)
    )


def norm_bounds(v: torch.Tensor, norm: str) -> tuple[float, float]:
    """Float ``(lower, upper)`` enclosing the *real* ``||v||`` (squared for ``l2``)."""
    n = v.numel()
    if norm == "l2":
        s = float((v * v).sum())
        err = float(fp_error(torch.tensor(s), n + 2))  # products, sum, and v's own rounding
        return max(0.0, s - err), s + err
    m = float(v.abs().max()) if n else 0.0
    err = float(fp_error(torch.tensor(m), 2))
    return max(0.0, m - err), m + err


def certify_trust_region(
    region: TrustRegion, meta: Sequence[torch.Tensor], adapted: Sequence[torch.Tensor]
):
    """Prove or refute ``||adapted - meta|| <= bound`` (``* ||meta||`` if relative).

    Returns:
        ``(Proved | Violated | Unknown, observed norm)``.
    """
    m, a = _flat(meta), _flat(adapted)
    if m.shape != a.shape:
        raise ValueError(f"trust region {region.module!r}: meta and adapted sizes differ")
    delta = a - m
    if not bool(torch.isfinite(delta).all()):
        return Unknown(f"{region.claim}: non-finite weight change"), float("nan")
    sq = region.norm == "l2"
    d_lo, d_hi = norm_bounds(delta, region.norm)
    if not math.isfinite(d_hi):  # e.g. a squared L2 norm past float64's range
        return Unknown(f"{region.claim}: weight-change norm overflows float64"), float("inf")
    observed = d_hi**0.5 if sq else d_hi
    limit = exact_value(region.bound)
    lim_pow = limit * limit if sq else limit
    dn = z3.Real(f"dnorm[{region.module}]")
    what = "||delta||_2^2" if sq else "||delta||_inf"
    facts = [Fact("delta", dn <= z3_rational(rational_upper(d_hi)), f"{what} <= {d_hi:.9g}")]
    if region.relative:
        m_lo, m_hi = norm_bounds(m, region.norm)
        if not math.isfinite(m_hi):
            return Unknown(f"{region.claim}: meta-weight norm overflows float64"), float("nan")
        mn = z3.Real(f"mnorm[{region.module}]")
        mtext = "||meta||_2^2" if sq else "||meta||_inf"
        facts.append(
            Fact("meta", mn >= z3_rational(rational_lower(m_lo)), f"{mtext} >= {m_lo:.9g}")
        )
        claim = dn <= z3_rational(lim_pow) * mn
        refuted = d_lo > float(lim_pow) * m_hi * (1 + 2**-50)
        observed = observed / max(m_hi**0.5 if sq else m_hi, 1e-300)
    else:
        claim = dn <= z3_rational(lim_pow)
        refuted = d_lo > float(lim_pow) * (1 + 2**-50)
    if refuted:
        note = f"weight change of {region.module!r}: {region.norm} norm {observed:.6g}"
        return Violated(Counterexample(x=None, y=delta, note=note), observed), observed
    return prove(facts, claim, method="weight-change norm", bound=observed), observed
