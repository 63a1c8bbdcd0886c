"""Smooth elementwise activations: their math, sound bounds, linear relaxations and enclosures.

One table, :data:`KINDS`, owns everything the tiers need per activation:

- ``f`` and ``df`` in torch float64 (the IR's semantics are the *mathematical* functions; e.g.
  ``softplus(x) = log(1 + e^x)`` exactly, not torch's thresholded ``nn.Softplus``);
- ``cuts(x0, x1)``: the points where ``f'`` changes monotonicity (zeros of ``f''``), so that on
  each piece between cuts ``f'`` is monotone;
- ``lip``: an exact rational upper bound on ``sup |f'|`` (for Lipschitz composition);
- ``enclose``: a rigorous mpmath interval enclosure of ``f`` (for exact counterexample checks).

Bounds over an interval ``[x0, x1]`` all come from one routine, :func:`line_offsets`: for a slope
``a`` the extremes of ``g(x) = f(x) - a x`` are at ``l``, ``u``, the cuts, or a root of
``f'(x) = a`` inside a piece (found by bisection, ``f'`` being monotone there). Float errors are
absorbed by generous outward margins: every float evaluation of ``f`` or ``f'`` at ``x`` is
trusted only to ``ERR * (1 + |x|)`` (libm and torch are accurate to a few ulps; this is ~64x
more), a root bracket ``[p, q]`` adds ``(|f'(p) - a| + |f'(q) - a|) (q - p)``, and a misplaced
root (where the float sign of ``f'(x) - a`` is wrong, so ``|f'(x) - a|`` is within the error)
adds ``ERR' * (x1 - x0)``. Interval bounds are the slope-0 case; the linear relaxation picks, per
neuron, the best of a few candidate slopes (chord, tangents at ``l``, ``u``, midpoint, 0), each
with its own sound offsets, so it is sound on any interval (convex, concave or neither).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import mpmath
import torch

ERR = 2.0**-44
"""Trusted accuracy of a float evaluation of ``f`` or ``f'`` at ``x``: ``ERR * (1 + |x|)``."""

BISECT_STEPS = 40
GUESS_WIDTH = 2.0**-30
"""Half-width of the bracket around a closed-form root, relative to ``1 + |root|``."""
WIDE_PERIODIC = 3.0 * math.pi
"""sin / cos on an interval wider than this are bounded by the constants ``[-1, 1]``."""


def _phi(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _big_phi(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))


def _fixed_cuts(*points: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def cuts(x0: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if not points:
            return x0.new_zeros((*x0.shape, 0))
        c = torch.tensor(points, dtype=torch.float64)
        return torch.minimum(torch.maximum(c, x0.unsqueeze(-1)), u.unsqueeze(-1))

    return cuts


def _periodic_cuts(offset: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cuts at ``offset + k pi`` inside ``[x0, u]``: ``ceil(w / pi) + 1`` candidates for the
    widest finite width ``w`` (an interval of width ``w`` holds at most ``ceil(w / pi)``; one
    more in case the float ``floor`` lands one multiple low), at most 4 (widths above
    :data:`WIDE_PERIODIC` are bounded by constants instead)."""

    def cuts(x0: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        k0 = torch.floor((x0 - offset) / math.pi)
        k0 = torch.where(torch.isfinite(k0), k0, torch.zeros_like(k0))
        w = u - x0
        finite = torch.isfinite(w)
        widest = float(w[finite].max()) if bool(finite.any()) else 0.0
        n = 4 if not bool(finite.all()) else min(4, math.ceil(widest / math.pi) + 1)
        ks = k0.unsqueeze(-1) + torch.arange(1, n + 1, dtype=torch.float64)
        c = offset + ks * math.pi
        return torch.minimum(torch.maximum(c, x0.unsqueeze(-1)), u.unsqueeze(-1))

    return cuts


# --- rigorous mpmath interval enclosures (used to confirm counterexamples) -------------------


def _iv_sigmoid(x):
    iv = mpmath.iv
    return 1 / (1 + iv.exp(-x))


def _iv_erf_small(z):
    """erf on a thin interval with |z| <= 12: alternating Taylor series plus its remainder bound.

    Terms grow to about ``e^(z^2)`` before they shrink, so the precision is raised by that many
    bits while summing.
    """
    iv = mpmath.iv
    saved = iv.prec
    z2f = float(abs(z).b) ** 2
    iv.prec = saved + int(1.5 * z2f) + 20
    try:
        total = iv.mpf(0)
        term = z  # (-1)^n z^(2n+1) / n!
        z2 = z * z
        n = 0
        tiny = mpmath.mpf(2) ** (-saved - 8)
        while True:
            total += term / (2 * n + 1)
            n += 1
            term = -term * z2 / n
            mag = abs(term).b / (2 * n + 1)
            if n > z2f + 2 and mag < tiny:
                break
        # decreasing alternating tail: |remainder| <= first omitted term
        return 2 / iv.sqrt(iv.pi) * (total + iv.mpf([-mag, mag]))
    finally:
        iv.prec = saved


def _iv_big_phi(x):
    """Normal CDF ``Phi(x) = (1 + erf(x / sqrt 2)) / 2`` on a thin interval."""
    iv = mpmath.iv
    z = x / iv.sqrt(2)
    if float(abs(z).b) <= 12:
        return (1 + _iv_erf_small(z)) / 2
    a = abs(z).a  # erfc(|z|) <= exp(-z^2) / (|z| sqrt(pi)) < 2^-200
    tail = iv.exp(-(iv.mpf(a) ** 2)) / (iv.mpf(a) * iv.sqrt(iv.pi))
    t = tail.b / 2
    return iv.mpf([0, t]) if float(z.b) < 0 else iv.mpf([1 - t, 1])


_ENCLOSE = {
    "tanh": lambda x: 1 - 2 / (mpmath.iv.exp(2 * x) + 1),
    "sigmoid": _iv_sigmoid,
    "softplus": lambda x: mpmath.iv.log1p(mpmath.iv.exp(x)),
    "sin": lambda x: mpmath.iv.sin(x),
    "cos": lambda x: mpmath.iv.cos(x),
    "gelu": lambda x: x * _iv_big_phi(x),
    "silu": lambda x: x * _iv_sigmoid(x),
}


@dataclass(frozen=True)
class ActivationMath:
    """Everything the tiers need about one activation (see the module docstring)."""

    f: Callable[[torch.Tensor], torch.Tensor]
    df: Callable[[torch.Tensor], torch.Tensor]
    cuts: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    lip: Fraction
    periodic: bool = False
    root: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    """Closed-form guess of the root of ``f'(x) = a`` on a piece ``[p0, p1]`` between cuts (any
    float, NaN where there is none): :func:`_find_roots` checks it and bisects where it fails."""


def _sig_d(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _side(p0: torch.Tensor, p1: torch.Tensor) -> torch.Tensor:
    """-1 on pieces left of 0, +1 right of it (the cut of the odd-derivative kinds)."""
    return torch.where(p0 + p1 < 0, -1.0, 1.0)


def _tanh_root(p0, p1, a):
    # 1 - tanh(x)^2 = a: |x| = atanh(s) = log1p(s) - log(a) / 2 with s = sqrt(1 - a)
    return _side(p0, p1) * (torch.log1p(torch.sqrt(1 - a)) - 0.5 * torch.log(a))


def _sigmoid_root(p0, p1, a):
    # s (1 - s) = a: |x| = 2 log1p(r) - log(4 a) with r = sqrt(1 - 4 a)
    return _side(p0, p1) * (2 * torch.log1p(torch.sqrt(1 - 4 * a)) - torch.log(4 * a))


def _periodic_root(shift: float):
    """Root of ``cos(x + shift) = a`` on a piece between consecutive cuts ``k pi - shift``."""

    def root(p0, p1, a):
        y = 0.5 * (p0 + p1) + shift
        k = torch.floor(y / math.pi)
        even = torch.remainder(k, 2) == 0
        t = torch.acos(a)
        return k * math.pi + torch.where(even, t, math.pi - t) - shift

    return root


KINDS: dict[str, ActivationMath] = {
    "tanh": ActivationMath(
        torch.tanh,
        lambda x: 1 - torch.tanh(x) ** 2,
        _fixed_cuts(0.0),
        Fraction(1),
        root=_tanh_root,
    ),
    "sigmoid": ActivationMath(
        torch.sigmoid, _sig_d, _fixed_cuts(0.0), Fraction(1, 4), root=_sigmoid_root
    ),
    "softplus": ActivationMath(
        lambda x: torch.logaddexp(x, torch.zeros_like(x)),
        torch.sigmoid,
        _fixed_cuts(),
        Fraction(1),
        root=lambda p0, p1, a: torch.log(a) - torch.log1p(-a),
    ),
    # sin' = cos; cos' = -sin = cos(x + pi / 2)
    "sin": ActivationMath(
        torch.sin,
        torch.cos,
        _periodic_cuts(0.0),
        Fraction(1),
        periodic=True,
        root=_periodic_root(0.0),
    ),
    "cos": ActivationMath(
        torch.cos,
        lambda x: -torch.sin(x),
        _periodic_cuts(math.pi / 2),
        Fraction(1),
        periodic=True,
        root=_periodic_root(math.pi / 2),
    ),
    # GELU (exact erf form): f' = Phi + x phi, f'' = phi (2 - x^2); max f' = f'(sqrt 2) < 1.129.
    "gelu": ActivationMath(
        lambda x: x * _big_phi(x),
        lambda x: _big_phi(x) + x * _phi(x),
        _fixed_cuts(-math.sqrt(2.0), math.sqrt(2.0)),
        Fraction(1129, 1000),
    ),
    # SiLU: f' = s (1 + x (1 - s)), f'' = 0 where x tanh(x / 2) = 2; max f' < 1.0999.
    "silu": ActivationMath(
        lambda x: x * torch.sigmoid(x),
        lambda x: torch.sigmoid(x) * (1 + x * (1 - torch.sigmoid(x))),
        _fixed_cuts(-2.3993572805154676, 2.3993572805154676),
        Fraction(10999, 10000),
    ),
}
"""Supported smooth activation kinds (ReLU has its own op, :class:`~.network.ReLU`)."""


def get(kind: str) -> ActivationMath:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown activation {kind!r}; supported: {sorted(KINDS)}") from None


def enclose(kind: str, x):
    """A rigorous mpmath interval containing ``f(x)`` for an mpmath interval ``x``."""
    get(kind)
    return _ENCLOSE[kind](x)


def _err(x: torch.Tensor) -> torch.Tensor:
    return ERR * (1.0 + x.abs())


def _find_roots(m: ActivationMath, p0, p1, a, d0, d1) -> tuple:
    """Brackets ``[p, q]`` of ``f'(x) = a`` on pieces ``[p0, p1]`` (f' monotone), given
    ``d0 = f'(p0)`` and ``d1 = f'(p1)``.

    Returns ``(p, q, has_root, hp, hq)`` with ``hp = f'(p) - a``, ``hq = f'(q) - a`` (as
    evaluated); without a sign change the bracket is ``[p0, p0]``. A bracket keeps the
    bisection's invariant: ``hp`` has the float sign of ``f'(p0) - a`` and ``hq`` does not. It
    comes from the closed-form guess ``m.root`` widened by :data:`GUESS_WIDTH` where that guess
    passes the check, else from bisection.
    """
    p0, p1, a, d0, d1 = torch.broadcast_tensors(p0, p1, a, d0, d1)
    h0, h1 = d0 - a, d1 - a
    has = (h0 * h1 < 0) & (p1 > p0)
    p, q = p0, torch.where(has, p1, p0)
    hp, hq = h0, torch.where(has, h1, h0)
    todo = has
    if m.root is not None:
        r = m.root(p0, p1, torch.where(has, a, 0.5))
        r = torch.where(torch.isfinite(r), r, p0)
        d = GUESS_WIDTH * (1.0 + r.abs())
        pg = torch.minimum(torch.maximum(r - d, p0), p1)
        qg = torch.maximum(torch.minimum(r + d, p1), p0)
        hpg, hqg = m.df(pg) - a, m.df(qg) - a
        ok = has & (hpg * h0 > 0) & (hqg * h0 <= 0) & (pg < qg)
        p, q = torch.where(ok, pg, p), torch.where(ok, qg, q)
        hp, hq = torch.where(ok, hpg, hp), torch.where(ok, hqg, hq)
        todo = has & ~ok
    if bool(todo.any()):
        at = a[todo]
        bl, bh = _bisect(m, p0[todo], p1[todo], at, h0[todo])
        p, q, hp, hq = p.clone(), q.clone(), hp.clone(), hq.clone()
        p[todo], q[todo] = bl, bh
        hp[todo], hq[todo] = m.df(bl) - at, m.df(bh) - at
    return p, q, has, hp, hq


def _bisect(m: ActivationMath, p0, p1, a, h0) -> tuple:
    """Bisection brackets on pieces with a sign change of ``f'(x) - a`` (1-D tensors)."""
    lo, hi = p0.clone(), p1.clone()
    for _ in range(BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        same = (m.df(mid) - a) * h0 > 0
        lo = torch.where(same, mid, lo)
        hi = torch.where(same, hi, mid)
    return lo, hi


def line_offsets(kind: str, x0: torch.Tensor, u: torch.Tensor, a: torch.Tensor) -> tuple:
    """Sound ``(b_lo, b_hi)`` with ``a x + b_lo <= f(x) <= a x + b_hi`` for all ``x`` in ``[x0, u]``.

    ``x0, u, a`` broadcast to a common shape; non-finite inputs give non-finite offsets.
    """
    m = get(kind)
    shape = torch.broadcast_tensors(x0, u, a)[0].shape  # (broadcast_shapes imports sympy)
    x0, u = torch.broadcast_tensors(x0, u)  # the points do not depend on the slope: once
    pts = torch.cat([x0.unsqueeze(-1), m.cuts(x0, u), u.unsqueeze(-1)], dim=-1)
    fp, dp = m.f(pts), m.df(pts)
    full = (*shape, pts.shape[-1])
    pts, fp, dp = pts.expand(full), fp.expand(full), dp.expand(full)
    ae = a.unsqueeze(-1)
    p, q, has, hp, hq = _find_roots(m, pts[..., :-1], pts[..., 1:], ae, dp[..., :-1], dp[..., 1:])
    corr = torch.where(has, (hp.abs() + hq.abs()) * (q - p), 0.0)
    cand = torch.cat([pts, p], dim=-1)
    slack = torch.cat([torch.zeros_like(pts), corr], dim=-1)
    fc = torch.cat([fp, m.f(p)], dim=-1)
    g = fc - ae * cand
    err = _err(cand) + 2.0**-50 * ((ae * cand).abs() + fc.abs()) + slack
    mis = 4 * ERR * (1.0 + torch.maximum(x0.abs(), u.abs())) * (u - x0)
    b_hi = (g + err).amax(-1) + mis
    b_lo = (g - err).amin(-1) - mis
    if m.periodic:
        wide = (u - x0) > WIDE_PERIODIC
        big = 1.0 + torch.maximum((a * x0).abs(), (a * u).abs()) * (1 + 2.0**-50)
        b_hi = torch.where(wide, big, b_hi)
        b_lo = torch.where(wide, -big, b_lo)
    return b_lo, b_hi


def interval(kind: str, x0: torch.Tensor, u: torch.Tensor) -> tuple:
    """Sound ``(lo, hi)`` of ``f`` over ``[x0, u]`` (elementwise)."""
    return line_offsets(kind, x0, u, torch.zeros_like(x0))


def derivative_range(kind: str, x0: torch.Tensor, u: torch.Tensor) -> tuple:
    """Sound ``(lo, hi)`` of ``f'`` over ``[x0, u]``: ``f'`` is monotone between cuts."""
    m = get(kind)
    pts = torch.cat([x0.unsqueeze(-1), m.cuts(x0, u), u.unsqueeze(-1)], dim=-1)
    d = m.df(pts)
    err = _err(pts).amax(-1)
    lo, hi = d.amin(-1) - err, d.amax(-1) + err
    if m.periodic:
        wide = (u - x0) > WIDE_PERIODIC
        lo = torch.where(wide, -1.0, lo)
        hi = torch.where(wide, 1.0, hi)
    return lo, hi


def relaxation(kind: str, x0: torch.Tensor, u: torch.Tensor) -> tuple:
    """Linear bounds ``al x + bl <= f(x) <= au x + bu`` on ``[x0, u]``: ``(al, bl, au, bu)``.

    Candidate slopes: chord, ``f'(x0)``, ``f'(u)``, ``f'(mid)`` and 0; the upper line with the
    lowest value at the midpoint and the lower line with the highest are kept, per element.
    """
    return relaxation_and_interval(kind, x0, u)[:4]


def relaxation_and_interval(kind: str, x0: torch.Tensor, u: torch.Tensor) -> tuple:
    """:func:`relaxation` and :func:`interval` from one pass (the interval is the slope-0
    candidate's offsets): ``(al, bl, au, bu, lo, hi)``."""
    m = get(kind)
    mid = 0.5 * (x0 + u)
    w = u - x0
    fl, fu = m.f(x0), m.f(u)
    chord = torch.where(w > 0, (fu - fl) / torch.where(w > 0, w, 1.0), m.df(x0))
    slopes = torch.stack([chord, m.df(x0), m.df(u), m.df(mid), torch.zeros_like(x0)])
    slopes = torch.where(torch.isfinite(slopes), slopes, 0.0)
    b_lo, b_hi = line_offsets(kind, x0.unsqueeze(0), u.unsqueeze(0), slopes)
    up = b_hi + slopes * mid
    lo = b_lo + slopes * mid
    up = torch.where(torch.isnan(up), math.inf, up)
    lo = torch.where(torch.isnan(lo), -math.inf, lo)
    iu = torch.argmin(up, 0, keepdim=True)
    il = torch.argmax(lo, 0, keepdim=True)
    au = slopes.gather(0, iu)[0]
    bu = b_hi.gather(0, iu)[0]
    al = slopes.gather(0, il)[0]
    bl = b_lo.gather(0, il)[0]
    # keep non-finite intervals visible to the caller's finiteness checks
    bad = ~(torch.isfinite(x0) & torch.isfinite(u))
    bu = torch.where(bad, math.nan, bu)
    bl = torch.where(bad, math.nan, bl)
    return al, bl, au, bu, b_lo[-1], b_hi[-1]
