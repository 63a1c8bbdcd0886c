"""Interval bounds of any IR network, and the relaxations of the structured image ops.

The forward linear bounds of :mod:`~metacompose.symbolic.linear_bounds` carry a coefficient per
input pixel for every neuron: ``(B, width, n)``, 25088 x 784 floats per box for the first layer of
a 28x28, 32-filter conv net. Networks with structured image ops
(:mod:`~metacompose.symbolic.image_ops`) are instead bounded here by interval arithmetic (outward
rounded as in :mod:`~metacompose.symbolic.linear_bounds`), and then tightened by CROWN
back-substitution (:mod:`~metacompose.symbolic.crown`), which needs only as many coefficient rows
as there are bounds to tighten.

When one box's coefficients fit :data:`MAX_LINEAR_FLOATS`, :func:`image_bounds` first runs the
forward linear relaxation through the structured ops too (conv applied to the coefficient tensor,
max-pool by its ``v_j <= y <= v_j + gap`` relaxation), box by box: its concrete bounds are never
looser than interval arithmetic's and far tighter behind a few layers, so CROWN has fewer unstable
neurons to tighten.
"""

from __future__ import annotations

import time

import torch

from metacompose.symbolic import activations
from metacompose.symbolic import linear_bounds as lbm
from metacompose.symbolic.image_ops import Conv2d, MaxPool2d
from metacompose.symbolic.linear_bounds import LinearBounds, fp_error
from metacompose.symbolic.network import INPUT, Activation, Add, Affine, Network, ReLU

Bounds = dict[str, tuple[torch.Tensor, torch.Tensor]]
MAX_LINEAR_FLOATS = 20_000_000  # one node, one box: 160 MB in float64 (peak ~1.2 GB at 32x28x28)


def affine_interval(op: Affine, lo: torch.Tensor, hi: torch.Tensor) -> tuple:
    """Sound ``(lo, hi)`` of ``x @ W.T + b`` for ``x`` in ``[lo, hi]`` (each ``(B, n)``)."""
    wp, wn = op.weight.clamp(min=0).T, op.weight.clamp(max=0).T
    mag = torch.maximum(lo.abs(), hi.abs()) @ op.weight.abs().T + op.bias.abs()
    err = fp_error(mag, op.weight.shape[1] + 1)
    return lo @ wp + hi @ wn + op.bias - err, hi @ wp + lo @ wn + op.bias + err


def conv_interval(op: Conv2d, lo: torch.Tensor, hi: torch.Tensor) -> tuple:
    """Sound ``(lo, hi)`` of the conv (with bias) for ``x`` in ``[lo, hi]`` (flat layout)."""
    wp, wn = op.weight.clamp(min=0), op.weight.clamp(max=0)
    b = op.bias_flat()
    mag = op.apply(torch.maximum(lo.abs(), hi.abs()), op.weight.abs()) + b.abs()
    err = fp_error(mag, op.fan_in + 1)
    out_lo = op.apply(lo, wp) + op.apply(hi, wn) + b - err
    out_hi = op.apply(hi, wp) + op.apply(lo, wn) + b + err
    return out_lo, out_hi


def interval_bounds(net: Network, xlo: torch.Tensor, xhi: torch.Tensor) -> Bounds:
    """Node -> sound ``(lo, hi)``, each ``(B, width)``, over the boxes ``[xlo, xhi]``."""
    out: Bounds = {INPUT: (xlo.to(torch.float64), xhi.to(torch.float64))}
    for name in net.order:
        nd = net.nodes[name]
        op = nd.op
        lo, hi = out[nd.inputs[0]]
        if isinstance(op, Affine):
            out[name] = affine_interval(op, lo, hi)
        elif isinstance(op, Conv2d):
            out[name] = conv_interval(op, lo, hi)
        elif isinstance(op, MaxPool2d):  # monotone, no arithmetic: exact
            out[name] = (op.apply(lo), op.apply(hi))
        elif isinstance(op, ReLU):
            out[name] = (lo.clamp(min=0), hi.clamp(min=0))
        elif isinstance(op, Activation):
            out[name] = activations.interval(op.kind, lo, hi)
        elif isinstance(op, Add):
            parts = [out[i] for i in nd.inputs]
            mag = sum(torch.maximum(a.abs(), b.abs()) for a, b in parts)
            err = fp_error(mag, len(parts))
            out[name] = (sum(a for a, _ in parts) - err, sum(b for _, b in parts) + err)
        else:  # Concat
            parts = [out[i] for i in nd.inputs]
            out[name] = (torch.cat([a for a, _ in parts], 1), torch.cat([b for _, b in parts], 1))
    return out


def maxpool_relaxation(op: MaxPool2d, lo: torch.Tensor, hi: torch.Tensor) -> tuple:
    """Linear bounds of each window's max ``y = max_i v_i`` from the inputs' bounds.

    With ``j`` the window element of largest lower bound: ``v_j <= y <= v_j + gap``,
    ``gap = max(0, max_{i != j} hi_i - lo_j)`` (if the max is ``v_i``, ``i != j``, then
    ``y <= hi_i <= lo_j + gap <= v_j + gap``). ``gap = 0`` when ``j`` is decided (``y = v_j``).
    Its worst-case error ``gap`` never exceeds the constant upper bound's, ``max_i hi_i - lo_j``,
    and it keeps the dependence on ``v_j``. ``gap`` is a difference of floats: rounded up.

    Returns:
        ``(index (B, out) flat input index of j, gap (B, out))``.
    """
    win = op.windows()  # (out, k*k)
    wl, wh = lo[:, win], hi[:, win]  # (B, out, k*k)
    j = wl.argmax(-1, keepdim=True)
    lj = wl.gather(-1, j).squeeze(-1)
    others = wh.scatter(-1, j, float("-inf")).amax(-1)
    diff = others - lj
    gap = torch.where(diff > 0, diff + fp_error(others.abs() + lj.abs(), 1), 0.0)
    index = win.expand(lo.shape[0], -1, -1).gather(-1, j).squeeze(-1)
    return index, gap


def image_bounds(
    net: Network, xlo: torch.Tensor, xhi: torch.Tensor, *, deadline: float | None = None
) -> Bounds:
    """Node -> sound ``(lo, hi)`` over the boxes: :func:`interval_bounds` intersected with the
    forward linear relaxation's concrete bounds (box by box, when one box's coefficients fit
    :data:`MAX_LINEAR_FLOATS`; both are sound, and where they are the same function they differ
    only in rounding slack). ``deadline`` (a ``time.perf_counter()`` value): boxes not reached by
    then keep the interval bounds alone (sound, looser; a 28x28 conv box takes seconds)."""
    xlo, xhi = xlo.to(torch.float64), xhi.to(torch.float64)
    ival = interval_bounds(net, xlo, xhi)
    if max(net.widths.values()) * xlo.shape[1] > MAX_LINEAR_FLOATS:
        return ival
    out = {k: (lo.clone(), hi.clone()) for k, (lo, hi) in ival.items()}
    for b in range(xlo.shape[0]):  # one box's coefficients at a time; keep only its (lo, hi)
        if deadline is not None and time.perf_counter() > deadline:
            break
        fwd = forward_linear_bounds(net, xlo[b : b + 1], xhi[b : b + 1])
        for k, (lo, hi) in out.items():
            lo[b] = torch.maximum(lo[b], fwd[k].lo[0])
            hi[b] = torch.minimum(hi[b], fwd[k].hi[0])
        del fwd
    return out


def forward_linear_bounds(
    net: Network, xlo: torch.Tensor, xhi: torch.Tensor
) -> dict[str, LinearBounds]:
    """Forward linear bounds (:mod:`~metacompose.symbolic.linear_bounds`) of every node of a
    network with structured image ops, each node's concrete bounds intersected with its
    concretised linear ones."""
    xabs = torch.maximum(xlo.abs(), xhi.abs())
    out = {INPUT: LinearBounds.identity(xlo, xhi)}
    for name in net.order:
        nd = net.nodes[name]
        op, p = nd.op, out[nd.inputs[0]]
        if isinstance(op, Affine):
            lb = lbm.add_bias(lbm.linear_map(p, op.weight, xabs), op.bias)
        elif isinstance(op, Conv2d):
            lb = _conv(p, op, xabs)
        elif isinstance(op, MaxPool2d):
            lb = _maxpool(p, op)
        elif isinstance(op, ReLU):
            lb = lbm.relu(p, xabs)
        elif isinstance(op, Activation):
            lb = lbm.activation(p, op.kind, xabs)
        elif isinstance(op, Add):
            lb = lbm.add([out[i] for i in nd.inputs])
        else:  # Concat
            lb = lbm.concat([out[i] for i in nd.inputs])
        out[name] = lb.tighten(xlo, xhi)
    return out


def _conv(p: LinearBounds, op: Conv2d, xabs: torch.Tensor) -> LinearBounds:
    """:func:`~metacompose.symbolic.linear_bounds.linear_map` with the conv as the matrix: the
    conv applied to every input coordinate's coefficient image, constants widened for the
    ``fan_in``-term sums (im2col and a matrix product in float64, :mod:`image_ops`)."""
    wp, wn = op.weight.clamp(min=0), op.weight.clamp(max=0)

    def coeffs(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # (B, m, n) -> (B, m', n)
        b, m, n = a.shape
        img = op.apply(a.transpose(1, 2).reshape(b * n, m), w)
        return img.reshape(b, n, -1).transpose(1, 2)

    au, al = coeffs(p.au, wp) + coeffs(p.al, wn), coeffs(p.al, wp) + coeffs(p.au, wn)
    cu, cl = op.apply(p.cu, wp) + op.apply(p.cl, wn), op.apply(p.cl, wp) + op.apply(p.cu, wn)
    hi, lo = op.apply(p.hi, wp) + op.apply(p.lo, wn), op.apply(p.lo, wp) + op.apply(p.hi, wn)
    err = fp_error(op.apply(p.magnitude(xabs), op.weight.abs()), op.fan_in)
    lb = LinearBounds(al, cl - err, au, cu + err, lo - err, hi + err)
    return lbm.add_bias(lb, op.bias_flat())


def _maxpool(p: LinearBounds, op: MaxPool2d) -> LinearBounds:
    """Each window's max between the linear bounds of its element ``j`` of largest lower bound
    and those plus ``gap`` (:func:`maxpool_relaxation`); concrete bounds exact (monotone)."""
    index, gap = maxpool_relaxation(op, p.lo, p.hi)  # (B, out) each
    rows = index.unsqueeze(-1).expand(-1, -1, p.al.shape[-1])
    cu = p.cu.gather(1, index)
    cu = cu + gap + fp_error(cu.abs() + gap, 1)  # the float sum, rounded up
    return LinearBounds(
        p.al.gather(1, rows), p.cl.gather(1, index), p.au.gather(1, rows), cu,
        op.apply(p.lo), op.apply(p.hi),
    )  # fmt: skip
