"""Image layers lowered exactly to the IR: conv, pooling and flatten on the flattened layout.

An image ``(C, H, W)`` lives in the IR as a vector of width ``C * H * W`` in row-major order
(torch's ``flatten(1)``), so ``Flatten`` is the identity. Every layer here becomes ordinary IR
nodes, so every tier (interval, CROWN, difference propagation, the exact z3 encoding and the
exact replay of counterexamples) handles it unchanged and soundly:

- ``Conv2d`` (any stride, zero padding, no dilation/groups) is linear: its dense ``(C'H'W', CHW)``
  matrix as an :class:`~.network.Affine`. CROWN's back-substitution ``lam @ W`` through it is
  exactly the conv_transpose of the coefficients; the dense form is its matrix.
- ``AvgPool2d`` is linear: an Affine with weights ``1/k^2``.
- ``MaxPool2d`` is a max over each window, written exactly with ReLUs:
  ``max(a, b) = a + relu(b - a)``, applied as a balanced tree over the window. Its relaxation is
  therefore the ReLU relaxation of each pairwise difference.

The cost grows with the square of the activation size: meant for small images (e.g. 8x8 digits
or a few channels); :func:`dense_size` says how large a lowered network is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metacompose.symbolic.network import Add, Affine, Node, ReLU

Shape = tuple[int, int, int]


def conv2d_out_shape(shape: Shape, out_channels: int, kernel: int, stride: int, padding: int):
    """``(C', H', W')`` of a conv (or pool with ``out_channels = C``) on ``shape``."""
    _, h, w = shape
    return (
        out_channels,
        (h + 2 * padding - kernel) // stride + 1,
        (w + 2 * padding - kernel) // stride + 1,
    )


def conv2d_affine(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    in_shape: Shape,
    *,
    stride: int = 1,
    padding: int = 0,
) -> tuple[Affine, Shape]:
    """The exact dense Affine of ``F.conv2d(x, weight, bias, stride, padding)`` on ``in_shape``.

    Args:
        weight: ``(C', C, k, k)``; bias: ``(C',)`` or ``None``.

    Returns:
        ``(Affine with weight (C'H'W', CHW), out_shape)``. Entries are the conv weights
        themselves (each output is a dot product with a subset of them), so the matrix is exact.
    """
    w = weight.detach().to(torch.float64)
    c_out, c_in, k, k2 = w.shape
    if k != k2 or c_in != in_shape[0]:
        raise ValueError(f"conv2d_affine: weight {tuple(w.shape)} does not fit input {in_shape}")
    out_shape = conv2d_out_shape(in_shape, c_out, k, stride, padding)
    n_in = c_in * in_shape[1] * in_shape[2]
    # column j of the matrix is the conv of the j-th basis image (linear map, no bias): exact
    # because every output is a single product weight * 1 summed with zeros.
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
    cols = F.conv2d(basis, w, None, stride=stride, padding=padding).reshape(n_in, -1)
    b = torch.zeros(c_out, dtype=torch.float64) if bias is None else bias.detach().double()
    full_b = b.repeat_interleave(out_shape[1] * out_shape[2])
    return Affine(cols.T.contiguous(), full_b), out_shape


def avgpool_affine(in_shape: Shape, kernel: int, stride: int | None = None) -> tuple:
    """The exact Affine of ``F.avg_pool2d(x, kernel, stride)`` (no padding)."""
    stride = kernel if stride is None else stride
    c = in_shape[0]
    out_shape = conv2d_out_shape(in_shape, c, kernel, stride, 0)
    rows = _window_rows(in_shape, out_shape, kernel, stride)  # (out, k*k) input indices
    mat = torch.zeros(rows.shape[0], c * in_shape[1] * in_shape[2], dtype=torch.float64)
    mat.scatter_(1, rows, 1.0 / (kernel * kernel))
    return Affine(mat, torch.zeros(rows.shape[0], dtype=torch.float64)), out_shape


def maxpool_nodes(
    name: str, h: str, in_shape: Shape, kernel: int, stride: int | None = None
) -> tuple[list[Node], str, Shape]:
    """Exact IR nodes of ``F.max_pool2d(x, kernel, stride)`` on node ``h`` (no padding).

    Returns:
        ``(nodes, output node name, out_shape)``.
    """
    stride = kernel if stride is None else stride
    c = in_shape[0]
    n_in = c * in_shape[1] * in_shape[2]
    out_shape = conv2d_out_shape(in_shape, c, kernel, stride, 0)
    rows = _window_rows(in_shape, out_shape, kernel, stride)  # (out, k*k)
    nodes: list[Node] = []
    # first level: select each window element from h (0/1 rows); later levels pair them up
    width = n_in
    cols = [rows[:, i] for i in range(rows.shape[1])]
    src = h
    level = 0
    while len(cols) > 1:
        pairs = [(cols[i], cols[i + 1]) for i in range(0, len(cols) - 1, 2)]
        odd = cols[-1] if len(cols) % 2 else None
        n_out = rows.shape[0]
        new_cols, sel_a, diff = [], [], []
        for p, (a, b) in enumerate(pairs):
            sel_a.append(_select(a, width, n_out, 1.0))
            diff.append(_select(b, width, n_out, 1.0) - _select(a, width, n_out, 1.0))
            new_cols.append(torch.arange(p * n_out, (p + 1) * n_out))
        if odd is not None:
            sel_a.append(_select(odd, width, n_out, 1.0))
            diff.append(torch.zeros(n_out, width, dtype=torch.float64))
            new_cols.append(torch.arange(len(pairs) * n_out, (len(pairs) + 1) * n_out))
        base = f"{name}.max{level}"
        zeros = torch.zeros(len(sel_a) * n_out, dtype=torch.float64)
        nodes.append(Node(f"{base}.a", Affine(torch.cat(sel_a), zeros), (src,)))
        nodes.append(Node(f"{base}.d", Affine(torch.cat(diff), zeros), (src,)))
        nodes.append(Node(f"{base}.relu", ReLU(), (f"{base}.d",)))
        nodes.append(Node(f"{base}.sum", Add(), (f"{base}.a", f"{base}.relu")))
        src, width, cols, level = f"{base}.sum", len(sel_a) * n_out, new_cols, level + 1
    if level == 0:  # a 1x1 window: a selection
        sel = _select(cols[0], width, rows.shape[0], 1.0)
        nodes.append(Node(f"{name}.sel", Affine(sel, torch.zeros(sel.shape[0])), (src,)))
        src = f"{name}.sel"
    return nodes, src, out_shape


def _select(idx: torch.Tensor, width: int, n_out: int, value: float) -> torch.Tensor:
    m = torch.zeros(n_out, width, dtype=torch.float64)
    m[torch.arange(n_out), idx] = value
    return m


def _window_rows(in_shape: Shape, out_shape: Shape, kernel: int, stride: int) -> torch.Tensor:
    """``(C*H'*W', k*k)`` flat input indices of each output's window (row-major layout)."""
    c, h, w = in_shape
    _, ho, wo = out_shape
    ci = torch.arange(c).view(c, 1, 1, 1, 1)
    oy = torch.arange(ho).view(1, ho, 1, 1, 1) * stride
    ox = torch.arange(wo).view(1, 1, wo, 1, 1) * stride
    ky = torch.arange(kernel).view(1, 1, 1, kernel, 1)
    kx = torch.arange(kernel).view(1, 1, 1, 1, kernel)
    idx = ci * h * w + (oy + ky) * w + (ox + kx)
    return idx.reshape(c * ho * wo, kernel * kernel)


def dense_size(nodes: list[Node]) -> int:
    """Total number of Affine weight entries (the memory a lowered network takes, in floats)."""
    return sum(nd.op.weight.numel() for nd in nodes if isinstance(nd.op, Affine))
