"""Symbolic interval bounds of one network over a batch of input boxes (forward linear relaxation).

Every value ``v`` of a node is sandwiched between two linear functions of the input,
``al @ x + cl <= v <= au @ x + cu`` for all ``x`` in the box, plus concrete bounds
``lo <= v <= hi``. Shapes: ``al, au: (B, m, n)``, ``cl, cu, lo, hi: (B, m)`` for ``B`` boxes, node
width ``m`` and input width ``n``.

Soundness under float64: each step widens its constants outward by ``fp_error`` (a Higham
``gamma_k`` bound on the rounding error of a ``k``-term dot product, doubled), so the computed
bounds hold for the real-arithmetic network with the given float weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metacompose.symbolic import activations

UNIT_ROUNDOFF = 2.0**-53
TINY = 1e-300  # absorbs underflow (each underflowing op errs by at most 2**-1074)


def fp_error(magnitude: torch.Tensor, n_terms: int) -> torch.Tensor:
    """Upper bound on the float64 rounding error of sums of ``n_terms`` products of size
    ``magnitude`` (``2 * gamma_{n+3} * magnitude + TINY``)."""
    k = n_terms + 3
    gamma = k * UNIT_ROUNDOFF / (1.0 - k * UNIT_ROUNDOFF)
    return 2.0 * gamma * magnitude + TINY


@dataclass
class LinearBounds:
    """Linear lower/upper functions of the input and concrete bounds for one node (see module)."""

    al: torch.Tensor
    cl: torch.Tensor
    au: torch.Tensor
    cu: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor

    @classmethod
    def identity(cls, xlo: torch.Tensor, xhi: torch.Tensor) -> LinearBounds:
        """The input itself over boxes ``[xlo, xhi]`` of shape ``(B, n)``."""
        b, n = xlo.shape
        eye = torch.eye(n, dtype=torch.float64).expand(b, n, n)
        zero = torch.zeros(b, n, dtype=torch.float64)
        return cls(eye, zero, eye, zero, xlo.clone(), xhi.clone())

    @classmethod
    def zeros(cls, b: int, m: int, n: int) -> LinearBounds:
        z = torch.zeros(b, m, dtype=torch.float64)
        za = torch.zeros(b, m, n, dtype=torch.float64)
        return cls(za, z, za, z, z, z)

    @classmethod
    def constant(cls, lo: torch.Tensor, hi: torch.Tensor, n: int) -> LinearBounds:
        """Concrete bounds only (zero coefficients, not stored: an expanded view), ``(B, m)``."""
        za = lo.new_zeros(()).expand(*lo.shape, n)
        return cls(za, lo, za, hi, lo, hi)

    def magnitude(self, xabs: torch.Tensor) -> torch.Tensor:
        """Bound on ``|al x + cl|`` and ``|au x + cu|`` over the box, shape ``(B, m)``."""
        ml = _bmv(self.al.abs(), xabs) + self.cl.abs()
        mu = _bmv(self.au.abs(), xabs) + self.cu.abs()
        return torch.maximum(torch.maximum(ml, mu), torch.maximum(self.lo.abs(), self.hi.abs()))

    def negate(self) -> LinearBounds:
        return LinearBounds(-self.au, -self.cu, -self.al, -self.cl, -self.hi, -self.lo)

    def tighten(self, xlo: torch.Tensor, xhi: torch.Tensor) -> LinearBounds:
        """Intersect the concrete bounds with the concretised linear bounds."""
        lo, hi = concretize(self, xlo, xhi)
        self.lo = torch.maximum(self.lo, lo)
        self.hi = torch.minimum(self.hi, hi)
        return self


def _bmv(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Batched matrix-vector product: ``(B, m, n) x (B, n) -> (B, m)``."""
    return torch.einsum("bmn,bn->bm", a, x)


def concretize(lb: LinearBounds, xlo: torch.Tensor, xhi: torch.Tensor) -> tuple:
    """Sound concrete ``(lo, hi)`` of the linear bounds over the boxes, each ``(B, m)``."""
    n = xlo.shape[1]
    xabs = torch.maximum(xlo.abs(), xhi.abs())
    lo = _bmv(lb.al.clamp(min=0), xlo) + _bmv(lb.al.clamp(max=0), xhi) + lb.cl
    hi = _bmv(lb.au.clamp(min=0), xhi) + _bmv(lb.au.clamp(max=0), xlo) + lb.cu
    lo = lo - fp_error(_bmv(lb.al.abs(), xabs) + lb.cl.abs(), n)
    hi = hi + fp_error(_bmv(lb.au.abs(), xabs) + lb.cu.abs(), n)
    return lo, hi


def linear_map(lb: LinearBounds, w: torch.Tensor, xabs: torch.Tensor) -> LinearBounds:
    """Bounds of ``w @ v`` (no bias) for ``v`` bounded by ``lb``; ``w`` has shape ``(k, m)``.

    Concrete bounds are the interval-arithmetic ones; constants are widened by ``fp_error``.
    """
    wp, wn = w.clamp(min=0), w.clamp(max=0)
    au = torch.matmul(wp, lb.au) + torch.matmul(wn, lb.al)
    al = torch.matmul(wp, lb.al) + torch.matmul(wn, lb.au)
    cu = lb.cu @ wp.T + lb.cl @ wn.T
    cl = lb.cl @ wp.T + lb.cu @ wn.T
    hi = lb.hi @ wp.T + lb.lo @ wn.T
    lo = lb.lo @ wp.T + lb.hi @ wn.T
    err = fp_error(lb.magnitude(xabs) @ w.abs().T, w.shape[1])
    return LinearBounds(al, cl - err, au, cu + err, lo - err, hi + err)


def add(parts: list[LinearBounds], n_terms: int | None = None) -> LinearBounds:
    """Bounds of the elementwise sum of the parts (constants widened for the float sum)."""
    first = parts[0]
    out = LinearBounds(first.al, first.cl, first.au, first.cu, first.lo, first.hi)
    for p in parts[1:]:
        out = LinearBounds(
            out.al + p.al, out.cl + p.cl, out.au + p.au, out.cu + p.cu, out.lo + p.lo, out.hi + p.hi
        )
    if len(parts) > 1:
        mag = sum(torch.maximum(p.lo.abs(), p.hi.abs()) for p in parts)
        err = fp_error(mag, n_terms or len(parts))
        out.cl, out.cu, out.lo, out.hi = out.cl - err, out.cu + err, out.lo - err, out.hi + err
    return out


def add_bias(lb: LinearBounds, b: torch.Tensor) -> LinearBounds:
    err = fp_error(b.abs() + torch.maximum(lb.lo.abs(), lb.hi.abs()), 1)
    return LinearBounds(
        lb.al, lb.cl + b - err, lb.au, lb.cu + b + err, lb.lo + b - err, lb.hi + b + err
    )


def concat(parts: list[LinearBounds]) -> LinearBounds:
    return LinearBounds(*(torch.cat([getattr(p, f) for p in parts], dim=1) for f in _FIELDS))


_FIELDS = ("al", "cl", "au", "cu", "lo", "hi")


def relu(lb: LinearBounds, xabs: torch.Tensor) -> LinearBounds:
    """Bounds of ``max(v, 0)``: exact on stable neurons, triangle relaxation on unstable ones
    (upper chord; lower slope 0 or 1, whichever keeps the larger area)."""
    act = lb.lo >= 0
    unst = (lb.lo < 0) & (lb.hi > 0)
    lam = torch.where(unst, lb.hi / (lb.hi - lb.lo).clamp(min=TINY), torch.zeros_like(lb.hi))
    keep_lower = unst & (lb.hi > -lb.lo)
    err = fp_error(lb.magnitude(xabs), 4)  # the float slope may sit an ulp off the true chord
    cu = torch.where(act, lb.cu, torch.where(unst, lam * (lb.cu - lb.lo) + err, 0.0))
    au = torch.where(act.unsqueeze(-1), lb.au, lam.unsqueeze(-1) * lb.au)
    lower_on = (act | keep_lower).unsqueeze(-1)
    al = torch.where(lower_on, lb.al, 0.0)
    cl = torch.where(act | keep_lower, lb.cl, 0.0)
    return LinearBounds(al, cl, au, cu, lb.lo.clamp(min=0), lb.hi.clamp(min=0))


def activation(lb: LinearBounds, kind: str, xabs: torch.Tensor) -> LinearBounds:
    """Bounds of a smooth activation ``f(v)``: the per-neuron relaxation of
    :func:`~metacompose.symbolic.activations.relaxation` composed with ``lb``; concrete bounds
    from :func:`~metacompose.symbolic.activations.interval`."""
    sl, bl, su, bu, lo, hi = activations.relaxation_and_interval(kind, lb.lo, lb.hi)
    mag = torch.maximum(sl.abs(), su.abs()) * lb.magnitude(xabs) + torch.maximum(bl.abs(), bu.abs())
    err = fp_error(mag, 3)
    su_pos = (su >= 0).unsqueeze(-1)
    sl_pos = (sl >= 0).unsqueeze(-1)
    au = su.unsqueeze(-1) * torch.where(su_pos, lb.au, lb.al)
    cu = su * torch.where(su >= 0, lb.cu, lb.cl) + bu + err
    al = sl.unsqueeze(-1) * torch.where(sl_pos, lb.al, lb.au)
    cl = sl * torch.where(sl >= 0, lb.cl, lb.cu) + bl - err
    return LinearBounds(al, cl, au, cu, lo, hi)
