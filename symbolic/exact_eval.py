"""Rigorous evaluation of a network at a point: the judge of every counterexample.

A float64 replay can be off by an ulp, and a limit within an ulp of the true value then reads as
violated when it is not. Here the network is evaluated in exact rational arithmetic (weights and
input are the exact rationals their floats denote): Affine, ReLU, Add and Concat exactly, smooth
activations through a rigorous mpmath interval enclosure at :data:`PRECISION` bits, structured
convolutions (:mod:`~metacompose.symbolic.image_ops`; tens of thousands of outputs) by float64
interval arithmetic rounded outward (a rigorous enclosure, not a point), max-pools exactly. Every
value is
an interval ``(lo, hi)`` of Fractions (``lo == hi`` for piecewise-linear networks), and a claim is
violated only when the *lower* end of the enclosure exceeds the limit as written.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import torch
from mpmath.libmp import to_rational

from metacompose.symbolic import activations
from metacompose.symbolic.image_bounds import conv_interval
from metacompose.symbolic.image_ops import Conv2d, MaxPool2d
from metacompose.symbolic.network import INPUT, Activation, Add, Affine, Network, NetworkPair, ReLU
from metacompose.symbolic.objectives import Objective
from metacompose.symbolic.rounding import float_below, fraction_to_float_up

PRECISION = 256
"""Bits of the mpmath interval arithmetic used for smooth activations."""

Interval = tuple[Fraction, Fraction]


def _fr(v: float) -> Fraction:
    return Fraction(float(v))


def _affine(op: Affine, xs: list[Interval]) -> list[Interval]:
    out = []
    thin = all(lo is hi or lo == hi for lo, hi in xs)
    for row, b in zip(op.weight.tolist(), op.bias.tolist()):
        lo = hi = _fr(b)
        for w, (a, c) in zip(row, xs):
            if w == 0.0:
                continue
            q = _fr(w)
            if thin:
                t = q * a
                lo, hi = lo + t, hi + t
            elif q > 0:
                lo, hi = lo + q * a, hi + q * c
            else:
                lo, hi = lo + q * c, hi + q * a
        out.append((lo, lo) if thin else (lo, hi))
    return out


def _conv(op: Conv2d, xs: list[Interval]) -> list[Interval]:
    lo = torch.tensor([[float_below(a) for a, _ in xs]], dtype=torch.float64)
    hi = torch.tensor([[fraction_to_float_up(c) for _, c in xs]], dtype=torch.float64)
    if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ValueError("conv input enclosure is not finite")
    out_lo, out_hi = conv_interval(op, lo, hi)
    if not bool(torch.isfinite(out_lo).all() and torch.isfinite(out_hi).all()):
        raise ValueError("conv output enclosure is not finite")
    return [(_fr(a), _fr(c)) for a, c in zip(out_lo[0].tolist(), out_hi[0].tolist())]


def _maxpool(op: MaxPool2d, xs: list[Interval]) -> list[Interval]:
    return [(max(xs[i][0] for i in w), max(xs[i][1] for i in w)) for w in op.windows().tolist()]


def _to_iv(lo: Fraction, hi: Fraction):
    iv = mpmath.iv
    a = iv.mpf(lo.numerator) / iv.mpf(lo.denominator)
    b = a if hi == lo else iv.mpf(hi.numerator) / iv.mpf(hi.denominator)
    return iv.mpf([a.a, b.b])


def _from_iv(v) -> Interval:
    lo, hi = v._mpi_
    return Fraction(*to_rational(lo)), Fraction(*to_rational(hi))


def _activation(kind: str, xs: list[Interval]) -> list[Interval]:
    iv = mpmath.iv
    saved = iv.prec
    iv.prec = PRECISION
    try:
        return [_from_iv(activations.enclose(kind, _to_iv(lo, hi))) for lo, hi in xs]
    finally:
        iv.prec = saved


def evaluate(net: Network, x: torch.Tensor) -> list[Interval]:
    """Enclosures of the outputs of ``net`` at the point ``x`` of shape ``(n,)``.

    Raises:
        ValueError: a weight or the input is not finite (``Fraction`` cannot hold it).
    """
    vals: dict[str, list[Interval]] = {
        INPUT: [(q, q) for q in (_fr(v) for v in x.reshape(-1).tolist())]
    }
    for name in net.order:
        nd = net.nodes[name]
        ins = [vals[i] for i in nd.inputs]
        op = nd.op
        if isinstance(op, Affine):
            vals[name] = _affine(op, ins[0])
        elif isinstance(op, ReLU):
            vals[name] = [(max(lo, Fraction(0)), max(hi, Fraction(0))) for lo, hi in ins[0]]
        elif isinstance(op, Activation):
            vals[name] = _activation(op.kind, ins[0])
        elif isinstance(op, Conv2d):
            vals[name] = _conv(op, ins[0])
        elif isinstance(op, MaxPool2d):
            vals[name] = _maxpool(op, ins[0])
        elif isinstance(op, Add):
            vals[name] = [(sum(p[0] for p in t), sum(p[1] for p in t)) for t in zip(*ins)]
        else:
            vals[name] = [v for part in ins for v in part]
    return vals[net.output]


def _abs(lo: Fraction, hi: Fraction) -> Interval:
    if lo >= 0:
        return lo, hi
    if hi <= 0:
        return -hi, -lo
    return Fraction(0), max(-lo, hi)


def objective_enclosure(pair: NetworkPair, objective: Objective, x: torch.Tensor) -> Interval:
    """An interval containing the exact objective value at ``x`` (``(n,)``)."""
    j = objective.index
    a = evaluate(pair.adapted, x)[j]
    if objective.kind == "deviation":
        m = evaluate(pair.meta, x)[j]
        return _abs(a[0] - m[1], a[1] - m[0])
    if objective.kind == "output_upper":
        return a
    return -a[1], -a[0]


def exceeds(pair: NetworkPair, objective: Objective, x: torch.Tensor, limit: Fraction) -> bool:
    """Whether the objective at ``x`` certainly exceeds ``limit`` (exact rational comparison).

    ``False`` when it does not or when the enclosure straddles the limit, or when ``x`` or a
    weight is not finite.
    """
    try:
        lo, _ = objective_enclosure(pair, objective, x)
    except (ValueError, OverflowError):
        return False
    return lo > limit


def quotient_exceeds(
    net: Network, x: torch.Tensor, y: torch.Tensor, norm: str, limit: Fraction
) -> bool:
    """Whether ``||f(y) - f(x)|| > limit * ||y - x||`` certainly holds, exactly (``norm`` l2/linf)."""
    try:
        fx, fy = evaluate(net, x), evaluate(net, y)
        dx = [_fr(b) - _fr(a) for a, b in zip(x.reshape(-1).tolist(), y.reshape(-1).tolist())]
    except (ValueError, OverflowError):
        return False
    low = [_abs(b[0] - a[1], b[1] - a[0])[0] for a, b in zip(fx, fy)]
    if norm == "l2":
        return sum(v * v for v in low) > limit * limit * sum(d * d for d in dx)
    return max(low) > limit * max(abs(d) for d in dx)
