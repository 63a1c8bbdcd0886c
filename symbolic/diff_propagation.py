"""ReluDiff-style bounds on the difference of two twin networks, propagated layer by layer.

For every node we keep linear bounds of the meta value ``z1``, the adapted value ``z2`` and their
difference ``d = z2 - z1`` as functions of the shared input ``x``. Through an Affine layer the
difference is ``W2 d + (W2 - W1) z1 + (b2 - b1)`` (or ``W1 d + (W2 - W1) z2 + ...``; the tighter is
kept per neuron), so the two networks stay correlated instead of being bounded separately;
through a ReLU, the difference is exact when both phases are decided and otherwise relaxed with
``min(d, 0) <= relu(z2) - relu(z1) <= max(d, 0)`` (ReluDiff, Paulsen et al., ICSE 2020).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metacompose.symbolic import linear_bounds as lbm
from metacompose.symbolic.linear_bounds import LinearBounds
from metacompose.symbolic.network import INPUT, Add, Affine, NetworkPair, ReLU


@dataclass
class PairBounds:
    """Bounds of one node: ``meta`` (z1), ``adapted`` (z2) and ``diff`` (z2 - z1)."""

    meta: LinearBounds
    adapted: LinearBounds
    diff: LinearBounds


def propagate_pair(pair: NetworkPair, xlo: torch.Tensor, xhi: torch.Tensor) -> dict:
    """Bounds of every node of both networks over the boxes ``[xlo, xhi]`` (each ``(B, n)``).

    Returns:
        node name (and ``INPUT``) -> :class:`PairBounds`; concrete bounds are ``(B, width)``.
    """
    xlo = xlo.to(torch.float64)
    xhi = xhi.to(torch.float64)
    xabs = torch.maximum(xlo.abs(), xhi.abs())
    b, n = xlo.shape
    ident = LinearBounds.identity(xlo, xhi)
    out = {INPUT: PairBounds(ident, ident, LinearBounds.zeros(b, n, n))}
    for name in pair.meta.order:
        nd1, nd2 = pair.meta.nodes[name], pair.adapted.nodes[name]
        ins = [out[i] for i in nd1.inputs]
        if isinstance(nd1.op, Affine):
            out[name] = _affine(ins[0], nd1.op, nd2.op, xlo, xhi, xabs)
        elif isinstance(nd1.op, ReLU):
            out[name] = _relu(ins[0], xlo, xhi, xabs)
        elif isinstance(nd1.op, Add):
            out[name] = PairBounds(
                *(lbm.add([getattr(p, f) for p in ins]) for f in ("meta", "adapted", "diff"))
            )
        else:
            out[name] = PairBounds(
                *(lbm.concat([getattr(p, f) for p in ins]) for f in ("meta", "adapted", "diff"))
            )
    return out


def output_bounds(pair: NetworkPair, xlo: torch.Tensor, xhi: torch.Tensor) -> PairBounds:
    """Bounds of the output node only (see :func:`propagate_pair`)."""
    return propagate_pair(pair, xlo, xhi)[pair.meta.output]


def _affine(p: PairBounds, op1: Affine, op2: Affine, xlo, xhi, xabs) -> PairBounds:
    z1 = lbm.add_bias(lbm.linear_map(p.meta, op1.weight, xabs), op1.bias).tighten(xlo, xhi)
    z2 = lbm.add_bias(lbm.linear_map(p.adapted, op2.weight, xabs), op2.bias).tighten(xlo, xhi)
    dw = op2.weight - op1.weight
    db = op2.bias - op1.bias
    # Two exact rewritings of the same difference; keep the tighter bound per neuron.
    da = lbm.add_bias(
        lbm.add([lbm.linear_map(p.diff, op2.weight, xabs), lbm.linear_map(p.meta, dw, xabs)]), db
    ).tighten(xlo, xhi)
    dbb = lbm.add_bias(
        lbm.add([lbm.linear_map(p.diff, op1.weight, xabs), lbm.linear_map(p.adapted, dw, xabs)]), db
    ).tighten(xlo, xhi)
    up = da.hi <= dbb.hi
    low = da.lo >= dbb.lo
    d = LinearBounds(
        torch.where(low.unsqueeze(-1), da.al, dbb.al),
        torch.where(low, da.cl, dbb.cl),
        torch.where(up.unsqueeze(-1), da.au, dbb.au),
        torch.where(up, da.cu, dbb.cu),
        torch.maximum(torch.maximum(da.lo, dbb.lo), z2.lo - z1.hi),
        torch.minimum(torch.minimum(da.hi, dbb.hi), z2.hi - z1.lo),
    )
    return PairBounds(z1, z2, d)


def _relu(p: PairBounds, xlo, xhi, xabs) -> PairBounds:
    z1, z2, d = p.meta, p.adapted, p.diff
    r1, r2 = lbm.relu(z1, xabs), lbm.relu(z2, xabs)
    act1, act2 = z1.lo >= 0, z2.lo >= 0
    off1, off2 = z1.hi <= 0, z2.hi <= 0
    # Generic relaxation from the sign of d (valid for every phase combination).
    pos, neg = d.lo >= 0, d.hi <= 0
    mixed = ~pos & ~neg
    width = (d.hi - d.lo).clamp(min=lbm.TINY)
    lam = torch.where(mixed, d.hi / width, 0.0)
    mu = torch.where(mixed, -d.lo / width, 0.0)
    err = lbm.fp_error(d.magnitude(xabs), 4)
    gau = torch.where(pos.unsqueeze(-1), d.au, lam.unsqueeze(-1) * d.au)
    gcu = torch.where(pos, d.cu, torch.where(mixed, lam * (d.cu - d.lo) + err, 0.0))
    gal = torch.where(neg.unsqueeze(-1), d.al, mu.unsqueeze(-1) * d.al)
    gcl = torch.where(neg, d.cl, torch.where(mixed, mu * (d.cl - d.hi) - err, 0.0))
    # Decided phases: both on -> d; both off -> 0; meta on / adapted off -> -z1; reverse -> z2.
    both_on, both_off = act1 & act2, off1 & off2
    on_off, off_on = act1 & off2, off1 & act2
    cases = [(both_on, d), (on_off, z1.negate()), (off_on, z2)]
    al, cl, au, cu = gal, gcl, gau, gcu
    for mask, src in cases:
        al = torch.where(mask.unsqueeze(-1), src.al, al)
        cl = torch.where(mask, src.cl, cl)
        au = torch.where(mask.unsqueeze(-1), src.au, au)
        cu = torch.where(mask, src.cu, cu)
    al = torch.where(both_off.unsqueeze(-1), 0.0, al)
    au = torch.where(both_off.unsqueeze(-1), 0.0, au)
    cl = torch.where(both_off, 0.0, cl)
    cu = torch.where(both_off, 0.0, cu)
    lo = torch.maximum(d.lo.clamp(max=0), r2.lo - r1.hi)
    hi = torch.minimum(d.hi.clamp(min=0), r2.hi - r1.lo)
    lo = torch.where(both_off, 0.0, lo)
    hi = torch.where(both_off, 0.0, hi)
    out = LinearBounds(al, cl, au, cu, lo, hi).tighten(xlo, xhi)
    return PairBounds(r1, r2, out)
