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

import time

import torch

from metacompose.symbolic import activations
from metacompose.symbolic.image_bounds import maxpool_relaxation
from metacompose.symbolic.image_ops import Conv2d, MaxPool2d
from metacompose.symbolic.linear_bounds import TINY, fp_error
from metacompose.symbolic.network import INPUT, Activation, Add, Affine, Network, ReLU

MAX_ROWS = 256
"""Coefficient rows per backward pass when tightening the bounds of an image network's neurons
(memory: rows x the widest layer x 8 bytes)."""
MAX_TIGHTEN = 2048
"""Most neurons per layer and box whose bounds are tightened by back-substitution in an image
network (the most ambiguous first); the others keep their interval bounds."""

Bounds = dict[str, tuple[torch.Tensor, torch.Tensor]]


def relu_relaxation(lo: torch.Tensor, hi: torch.Tensor) -> tuple:
    """CROWN's ReLU lines ``(al, bl, au, bu)``: chord above, slope 0 or 1 below (adaptive)."""
    act, dead = lo >= 0, hi <= 0
    unst = ~act & ~dead
    lam = torch.where(unst, hi / torch.where(unst, hi - lo, 1.0), act.to(lo.dtype))
    bu = torch.where(unst, -lam * lo + fp_error(torch.maximum(lo.abs(), hi.abs()), 4), 0.0)
    al = torch.where(act | (unst & (hi > -lo)), 1.0, 0.0).to(lo.dtype)
    return al, torch.zeros_like(lo), lam, bu


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
            cmag = (contrib.abs() * mags[u].unsqueeze(1)).sum(-1)
            slack = slack + fp_error(cmag, 1) + TINY * lv.shape[-1]  # fp_error is linear
            slack = slack + _accumulate(lam, u, contrib, mags)
        elif isinstance(op, Conv2d):
            u = nd.inputs[0]
            absl = lv.abs()
            const = const + op.bias_map(lv)
            n_pos = op.out_shape[1] * op.out_shape[2]
            bmag = absl.reshape(b, k, op.out_shape[0], -1).sum(-1) @ op.bias.abs()
            slack = slack + fp_error(bmag, n_pos + op.out_shape[0])
            # sum_j (|lam| |W|)_j mags_j = sum_o |lam_o| (|W| mags)_o: one forward conv per box
            wmag = op.apply(mags[u], op.weight.abs()).unsqueeze(1)
            err = fp_error((absl * wmag).sum(-1), op.fan_out) + TINY * net.widths[u]
            slack = slack + err
            slack = slack + _accumulate(lam, u, op.transpose(lv), mags)
        elif isinstance(op, MaxPool2d):
            u = nd.inputs[0]
            index, gap = relax[name]  # v_j <= y <= v_j + gap (image_bounds)
            cterm = lv.clamp(min=0) * gap.unsqueeze(1)
            const = const + cterm.sum(-1)
            slack = slack + fp_error(cterm.sum(-1), lv.shape[-1])
            idx = index.unsqueeze(1).expand(b, k, -1)
            contrib = lv.new_zeros(b, k, net.widths[u]).scatter_add_(2, idx, lv)
            if op.stride < op.kernel:  # overlapping windows: two outputs may add into one input
                summed = lv.new_zeros(b, k, net.widths[u]).scatter_add_(2, idx, lv.abs())
                err = fp_error(summed, op.kernel * op.kernel)
                slack = slack + (err * mags[u].unsqueeze(1)).sum(-1)
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


def net_crown(
    net: Network, bounds: Bounds, xlo, xhi, *, deadline: float | None = None
) -> tuple[dict, dict]:
    """Tighten the input bounds of every activation of ``net`` by back-substitution.

    Only nodes behind two or more activations are re-derived (:func:`activation_depth`) when
    the bounds are forward linear bounds; for an image network (interval bounds, see
    :mod:`~metacompose.symbolic.image_bounds`) every node behind one, but only the neurons whose
    bounds matter: unstable ReLU inputs, and the inputs of max-pool windows not yet decided.

    Args:
        bounds: node -> sound ``(lo, hi)``, each ``(B, width)``; updated.
        deadline: a ``time.perf_counter()`` value past which an image network's neurons are
            no longer tightened (their bounds stay as given: sound, looser).

    Returns:
        ``(relax, mags)`` for :func:`backward` from any node.
    """
    mags = {k: torch.maximum(lo.abs(), hi.abs()) for k, (lo, hi) in bounds.items()}
    relax: dict = {}
    image = net.has_image_ops
    depth = activation_depth(net)
    for name in net.order:
        nd = net.nodes[name]
        if isinstance(nd.op, MaxPool2d):
            if image:
                _decide_windows(net, name, depth, bounds, relax, mags, xlo, xhi, deadline)
            relax[name] = maxpool_relaxation(nd.op, *bounds[nd.inputs[0]])
            continue
        if not isinstance(nd.op, ReLU | Activation):
            continue
        u = nd.inputs[0]
        if image and depth[u] > 0:
            lo, hi = bounds[u]
            if isinstance(nd.op, ReLU):
                score = torch.minimum(-lo, hi)  # > 0: unstable
            else:
                score = hi - lo
            _tighten(net, u, score, bounds, relax, mags, xlo, xhi, deadline)
        elif depth[u] > 1:
            w = net.widths[u]
            lx, c, s = backward(net, u, _pm_eye(xlo.shape[0], w), relax, mags)
            up = concretize_upper(lx, c, s, xlo, xhi)
            _intersect(bounds, mags, u, -up[:, w:], up[:, :w])
        _activate(net, name, bounds, relax, mags)
    return relax, mags


def _activate(net: Network, name: str, bounds: Bounds, relax: dict, mags: dict) -> None:
    """Relax activation ``name`` from its input's bounds; tighten its own bounds from them."""
    op = net.nodes[name].op
    lo, hi = bounds[net.nodes[name].inputs[0]]
    if isinstance(op, ReLU):
        relax[name] = relu_relaxation(lo, hi)
        _intersect(bounds, mags, name, lo.clamp(min=0), hi.clamp(min=0))
    else:
        al, bl, au, bu, ilo, ihi = activations.relaxation_and_interval(op.kind, lo, hi)
        relax[name] = (al, bl, au, bu)
        _intersect(bounds, mags, name, ilo, ihi)


def _decide_windows(net, name, depth, bounds, relax, mags, xlo, xhi, deadline=None) -> None:
    """Tighten the inputs of max-pool windows that are undecided (the relaxation's gap grows
    with every element's width), when the pool follows an activation of a deeper node."""
    op = net.nodes[name].op
    r = net.nodes[name].inputs[0]
    if not isinstance(net.nodes[r].op, ReLU | Activation):
        return
    u = net.nodes[r].inputs[0]
    if depth[u] == 0:
        return
    _, gap = maxpool_relaxation(op, *bounds[r])
    win = op.windows()
    lo, hi = bounds[u]
    # score > 0: an element of an undecided window that can be positive; wider first
    member = torch.zeros_like(lo, dtype=torch.bool)
    for b in range(lo.shape[0]):
        member[b, win[gap[b] > 0].flatten()] = True
    score = torch.where(member & (hi > 0), hi - lo, 0.0)
    if bool((score > 0).any()):
        _tighten(net, u, score, bounds, relax, mags, xlo, xhi, deadline)
        _activate(net, r, bounds, relax, mags)


def _intersect(bounds: Bounds, mags: dict, node: str, lo, hi) -> None:
    old_lo, old_hi = bounds[node]
    lo, hi = torch.maximum(old_lo, lo), torch.minimum(old_hi, hi)
    bounds[node] = (lo, hi)
    mags[node] = torch.maximum(lo.abs(), hi.abs())


def _tighten(
    net: Network, u: str, score, bounds: Bounds, relax: dict, mags: dict, xlo, xhi,
    deadline: float | None = None,
):  # fmt: skip
    """Back-substitute from the neurons of ``u`` with ``score > 0`` (highest first, at most
    :data:`MAX_TIGHTEN` per box), box by box, in chunks of :data:`MAX_ROWS` rows; boxes not
    reached by ``deadline`` keep their bounds."""
    lo, hi = bounds[u]
    new_lo, new_hi = lo.clone(), hi.clone()
    for b in range(lo.shape[0]):
        if deadline is not None and time.perf_counter() > deadline:
            break
        idx = torch.nonzero(score[b] > 0).flatten()
        idx = idx[score[b, idx].argsort(descending=True)][:MAX_TIGHTEN]
        if idx.numel() == 0:
            continue
        rel = {k: tuple(t[b : b + 1] for t in v) for k, v in relax.items()}
        mg = {k: v[b : b + 1] for k, v in mags.items()}
        for chunk in idx.split(MAX_ROWS // 2):
            n = chunk.numel()
            rows = lo.new_zeros(1, 2 * n, lo.shape[1])
            rows[0, torch.arange(n), chunk] = 1.0
            rows[0, n + torch.arange(n), chunk] = -1.0
            lx, c, s = backward(net, u, rows, rel, mg)
            up = concretize_upper(lx, c, s, xlo[b : b + 1], xhi[b : b + 1])[0]
            new_hi[b, chunk] = torch.minimum(new_hi[b, chunk], up[:n])
            new_lo[b, chunk] = torch.maximum(new_lo[b, chunk], -up[n:])
    _intersect(bounds, mags, u, new_lo, new_hi)


def activation_depth(net: Network) -> dict[str, int]:
    """Node -> the most nonlinear ops (activations, max-pools) on any path from the input to it,
    the node included.

    A node of depth <= 1 needs no back-substitution for its own bounds when the bounds are
    forward linear bounds (:mod:`~metacompose.symbolic.linear_bounds`): they compose the same
    per-neuron lines with the same choice by sign, so CROWN would return the same bound at
    several times the cost.
    """
    depth = {INPUT: 0}
    for name in net.order:
        nd = net.nodes[name]
        d = max(depth[u] for u in nd.inputs)
        depth[name] = d + int(isinstance(nd.op, ReLU | Activation | MaxPool2d))
    return depth


def pair_output_bounds(
    pair, fwd: dict, xlo, xhi, *, deadline: float | None = None
) -> dict[str, torch.Tensor]:
    """CROWN bounds of the outputs and of the difference network, each ``(B, m)``.

    Args:
        fwd: node -> :class:`~metacompose.symbolic.diff_propagation.PairBounds` (forward pass).
        deadline: see :func:`net_crown`.

    Returns:
        ``meta_lo, meta_hi, adapted_lo, adapted_hi, diff_lo, diff_hi``.
    """
    m = pair.output_dim
    b = xlo.shape[0]
    per = {}
    for which, net in (("meta", pair.meta), ("adapted", pair.adapted)):
        bounds = {k: (getattr(p, which).lo, getattr(p, which).hi) for k, p in fwd.items()}
        relax, mags = net_crown(net, bounds, xlo, xhi, deadline=deadline)
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
