"""CROWN back-substitution through each network and through the difference network.

The difference network ``f_adapted - f_meta`` is the two networks side by side on a shared input,
so its CROWN bound is the *sum* of the two networks' backward linear functions of ``x`` (rows
``+e_j`` for the adapted net, ``-e_j`` for the meta net), concretised once: the common input
cancels before the box is applied, unlike subtracting separately concretised bounds.

Backward pass, per network, for rows ``C`` (an upper bound of ``C y``): a coefficient tensor
``lam`` of shape ``(B, K, width)`` flows from the output to the input; an Affine node maps it by
``lam @ W`` (constant ``lam @ b``), an activation by its relaxation (upper line where ``lam > 0``,
lower line where ``lam < 0``), Add copies it to each input, Concat slices it. Intermediate bounds
(the inputs of activations) are re-derived the same way, in topological order, and intersected
with the forward bounds.

Float soundness: each computed ``lam`` is treated as exact from then on; the rounding error of
computing it (a Higham ``gamma`` bound times ``|lam| |W|``) times a bound on ``|value|`` of the
node it multiplies is added to a per-row ``slack``. So the final bound holds for the real-
arithmetic networks with the given float weights.
"""

from __future__ import annotations

import torch

from metacompose.symbolic import activations
from metacompose.symbolic.linear_bounds import fp_error
from metacompose.symbolic.network import INPUT, Activation, Add, Affine, Network, ReLU

Bounds = dict[str, tuple[torch.Tensor, torch.Tensor]]


def relu_relaxation(lo: torch.Tensor, hi: torch.Tensor) -> tuple:
    """CROWN's ReLU lines ``(al, bl, au, bu)``: chord above, slope 0 or 1 below (adaptive)."""
    act, dead = lo >= 0, hi <= 0
    unst = ~act & ~dead
    lam = torch.where(unst, hi / torch.where(unst, hi - lo, 1.0), act.to(lo.dtype))
    bu = torch.where(unst, -lam * lo + fp_error(torch.maximum(lo.abs(), hi.abs()), 4), 0.0)
    al = torch.where(act | (unst & (hi > -lo)), 1.0, 0.0).to(lo.dtype)
    return al, torch.zeros_like(lo), lam, bu


def _relaxation(op, lo: torch.Tensor, hi: torch.Tensor) -> tuple:
    if isinstance(op, ReLU):
        return relu_relaxation(lo, hi)
    return activations.relaxation(op.kind, lo, hi)


def backward(
    net: Network, start: str, rows: torch.Tensor, relax: dict, mags: dict
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear upper bound ``rows @ value(start) <= lam_x @ x + const + slack`` over the box.

    Args:
        start: node whose value is bounded.
        rows: ``(B, K, width(start))``.
        relax: activation node -> ``(al, bl, au, bu)``, each ``(B, width)``.
        mags: node -> ``(B, width)`` bound on ``|value|`` (rounding-error accounting).

    Returns:
        ``(lam_x (B, K, n), const (B, K), slack (B, K))``.
    """
    lam = {start: rows}
    b, k = rows.shape[:2]
    const = rows.new_zeros(b, k)
    slack = rows.new_zeros(b, k)
    idx = net.order.index(start)
    for name in reversed(net.order[: idx + 1]):
        if name not in lam:
            continue
        lv = lam.pop(name)
        nd = net.nodes[name]
        op = nd.op
        if isinstance(op, Affine):
            u = nd.inputs[0]
            absl = lv.abs()
            const = const + lv @ op.bias
            slack = slack + fp_error(absl @ op.bias.abs(), op.weight.shape[0])
            err = fp_error(absl @ op.weight.abs(), op.weight.shape[0])
            slack = slack + (err * mags[u].unsqueeze(1)).sum(-1)
            slack = slack + _accumulate(lam, u, lv @ op.weight, mags)
        elif isinstance(op, ReLU | Activation):
            u = nd.inputs[0]
            al, bl, au, bu = relax[name]
            pos, neg = lv.clamp(min=0), lv.clamp(max=0)
            contrib = pos * au.unsqueeze(1) + neg * al.unsqueeze(1)
            cterm = pos * bu.unsqueeze(1) + neg * bl.unsqueeze(1)
            const = const + cterm.sum(-1)
            slack = slack + fp_error(cterm.abs().sum(-1), lv.shape[-1])
            slack = slack + (fp_error(contrib.abs(), 1) * mags[u].unsqueeze(1)).sum(-1)
            slack = slack + _accumulate(lam, u, contrib, mags)
        elif isinstance(op, Add):
            for u in nd.inputs:
                slack = slack + _accumulate(lam, u, lv, mags)
        else:  # Concat
            col = 0
            for u in nd.inputs:
                w = net.widths[u]
                slack = slack + _accumulate(lam, u, lv[..., col : col + w], mags)
                col += w
    lam_x = lam.pop(INPUT, rows.new_zeros(b, k, net.input_dim))
    return lam_x, const, slack


def _accumulate(lam: dict, node: str, contrib: torch.Tensor, mags: dict) -> torch.Tensor:
    """Add ``contrib`` into ``lam[node]``; returns the slack charged for the float addition."""
    if node not in lam:
        lam[node] = contrib
        return contrib.new_zeros(contrib.shape[:2])
    total = lam[node] + contrib
    lam[node] = total
    return (fp_error(total.abs(), 1) * mags[node].unsqueeze(1)).sum(-1)


def concretize_upper(
    lam_x: torch.Tensor, const: torch.Tensor, slack: torch.Tensor, xlo, xhi
) -> torch.Tensor:
    """Sound upper bound of ``lam_x @ x + const + slack`` over the boxes: ``(B, K)``."""
    xabs = torch.maximum(xlo.abs(), xhi.abs())
    val = (
        torch.einsum("bkn,bn->bk", lam_x.clamp(min=0), xhi)
        + torch.einsum("bkn,bn->bk", lam_x.clamp(max=0), xlo)
        + const
        + slack
    )
    mag = torch.einsum("bkn,bn->bk", lam_x.abs(), xabs) + const.abs() + slack
    return val + fp_error(mag, lam_x.shape[-1] + 2)


def _pm_eye(b: int, w: int) -> torch.Tensor:
    eye = torch.eye(w, dtype=torch.float64)
    return torch.cat([eye, -eye]).expand(b, 2 * w, w)


def net_crown(net: Network, bounds: Bounds, xlo, xhi) -> tuple[dict, dict]:
    """Tighten the input bounds of every activation of ``net`` by back-substitution.

    Only nodes behind two or more activations are re-derived (:func:`activation_depth`).

    Args:
        bounds: node -> sound ``(lo, hi)`` (forward linear bounds), each ``(B, width)``; updated.

    Returns:
        ``(relax, mags)`` for :func:`backward` from any node.
    """
    mags = {k: torch.maximum(lo.abs(), hi.abs()) for k, (lo, hi) in bounds.items()}
    relax: dict = {}
    depth = activation_depth(net)
    for name in net.order:
        nd = net.nodes[name]
        if not isinstance(nd.op, ReLU | Activation):
            continue
        u = nd.inputs[0]
        if depth[u] > 1:
            w = net.widths[u]
            lx, c, s = backward(net, u, _pm_eye(xlo.shape[0], w), relax, mags)
            up = concretize_upper(lx, c, s, xlo, xhi)
            lo, hi = bounds[u]
            lo, hi = torch.maximum(lo, -up[:, w:]), torch.minimum(hi, up[:, :w])
            bounds[u] = (lo, hi)
            mags[u] = torch.maximum(lo.abs(), hi.abs())
        relax[name] = _relaxation(nd.op, *bounds[u])
    return relax, mags


def activation_depth(net: Network) -> dict[str, int]:
    """Node -> the most activations on any path from the input to it (inclusive).

    A node of depth <= 1 needs no back-substitution for its own bounds: the forward linear
    bounds (:mod:`~metacompose.symbolic.linear_bounds`) compose the same per-neuron lines with
    the same choice by sign, so CROWN would return the same bound at several times the cost.
    """
    depth = {INPUT: 0}
    for name in net.order:
        nd = net.nodes[name]
        d = max(depth[u] for u in nd.inputs)
        depth[name] = d + int(isinstance(nd.op, ReLU | Activation))
    return depth


def pair_output_bounds(pair, fwd: dict, xlo, xhi) -> dict[str, torch.Tensor]:
    """CROWN bounds of the outputs and of the difference network, each ``(B, m)``.

    Args:
        fwd: node -> :class:`~metacompose.symbolic.diff_propagation.PairBounds` (forward pass).

    Returns:
        ``meta_lo, meta_hi, adapted_lo, adapted_hi, diff_lo, diff_hi``.
    """
    m = pair.output_dim
    b = xlo.shape[0]
    per = {}
    for which, net in (("meta", pair.meta), ("adapted", pair.adapted)):
        bounds = {k: (getattr(p, which).lo, getattr(p, which).hi) for k, p in fwd.items()}
        relax, mags = net_crown(net, bounds, xlo, xhi)
        per[which] = backward(net, net.output, _pm_eye(b, m), relax, mags)
    out = {}
    for which in ("meta", "adapted"):
        up = concretize_upper(*per[which], xlo, xhi)
        out[f"{which}_hi"], out[f"{which}_lo"] = up[:, :m], -up[:, m:]
    (la, ca, sa), (lm, cm, sm) = per["adapted"], per["meta"]
    # rows j: +a_j - m_j (diff upper); rows m + j: -a_j + m_j (minus diff lower)
    flip = torch.cat([torch.arange(m, 2 * m), torch.arange(m)])
    up = concretize_upper(la + lm[:, flip], ca + cm[:, flip], sa + sm[:, flip], xlo, xhi)
    out["diff_hi"], out["diff_lo"] = up[:, :m], -up[:, m:]
    return out
