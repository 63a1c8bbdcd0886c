"""Interval bounds of any IR network, and the relaxations of the structured image ops.

The forward linear bounds of :mod:`~metacompose.symbolic.linear_bounds` carry a coefficient per
input pixel for every neuron: ``(B, width, n)``, 25088 x 784 floats per box for the first layer of
a 28x28, 32-filter conv net. Networks with structured image ops
(:mod:`~metacompose.symbolic.image_ops`) are instead bounded here by interval arithmetic (outward
rounded as in :mod:`~metacompose.symbolic.linear_bounds`), and then tightened by CROWN
back-substitution (:mod:`~metacompose.symbolic.crown`), which needs only as many coefficient rows
as there are bounds to tighten.
"""

from __future__ import annotations

import torch

from metacompose.symbolic import activations
from metacompose.symbolic.image_ops import Conv2d, MaxPool2d
from metacompose.symbolic.linear_bounds import fp_error
from metacompose.symbolic.network import INPUT, Activation, Add, Affine, Network, ReLU

Bounds = dict[str, tuple[torch.Tensor, torch.Tensor]]


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
