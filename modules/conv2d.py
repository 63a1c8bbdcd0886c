"""2-d convolution whose double backward runs the fast backward kernels.

Second-order MAML differentiates each inner step's gradient, so the convolution's *backward* is
itself differentiated. Torch's generic double backward (``ConvolutionBackwardBackward0``) computes
the weight term as a convolution of transposed tensors, which on CPU runs ~2-4.5x slower than the
backward-weight kernel that computes the same sum (conv4's 1-shot support maps), and it computes the
input term even for an input that needs no gradient (the images at the first layer). Here the
backward is a function of its own (:class:`_ConvBackward`) whose backward, given cotangents
``(gI, gW, gb)`` of the backward's outputs ``(dx, dw, db)`` at the output cotangent ``dy``, is:

- ``g_dy = conv(gI, w) + conv(x, gW) + gb``: the forward convolution is linear in each argument;
- ``g_x = dconv(x, gW)/dx`` applied to ``dy``: the backward-input kernel with weight ``gW``;
- ``g_w = dconv(gI, w)/dw`` applied to ``dy``: the backward-weight kernel with input ``gI``;

each computed only when it is needed. The reference tests (``tests/modules/test_conv2d.py``) check
them against torch's own double backward and ``gradgradcheck`` in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metacompose.modules.transforms import inside_transform

Pair = tuple[int, int]


def conv2d(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    *,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv2d(x, w, b, ...)`` with the fast double backward of this module's docstring.

    Inside a ``torch.func`` transform (custom autograd functions would need functorch rules) and
    under autocast (which casts inside the forward) it is ``F.conv2d`` itself. Third-order
    derivatives are refused loudly.
    """
    if torch.is_autocast_enabled(x.device.type) or inside_transform(x, w, b):
        return F.conv2d(x, w, b, stride, padding, dilation, groups)
    return _Conv.apply(x, w, b, (tuple(stride), tuple(padding), tuple(dilation), groups))


class _Conv(torch.autograd.Function):
    """Forward: torch's convolution. Backward: :class:`_ConvBackward`."""

    @staticmethod
    def forward(ctx, x, w, b, geometry):
        stride, padding, dilation, groups = geometry
        ctx.save_for_backward(x, w)
        ctx.geometry = geometry
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        mask = tuple(ctx.needs_input_grad[:3])
        if torch.is_grad_enabled():  # create_graph: the backward is differentiated again
            dx, dw, db = _ConvBackward.apply(dy, x, w, ctx.geometry, mask)
        else:
            dx, dw, db = _backward(dy, x, w, ctx.geometry, mask)
        return dx, dw, db, None


class _ConvBackward(torch.autograd.Function):
    """``(dy, x, w) -> (dx, dw, db)`` by the backward kernels (``None`` where not needed)."""

    @staticmethod
    def forward(ctx, dy, x, w, geometry, mask):
        dx, dw, db = _backward(dy, x, w, geometry, mask)
        ctx.save_for_backward(dy, x, w)
        ctx.geometry = geometry
        return dx, dw, db

    @staticmethod
    def backward(ctx, gx, gw, gb):
        dy, x, w = ctx.saved_tensors
        if torch.is_grad_enabled() and any(
            t.requires_grad for t in (gx, gw, gb, dy, x, w) if t is not None
        ):
            raise RuntimeError(
                "metacompose conv2d: third-order derivatives are not implemented "
                "(its double backward is not differentiable again)"
            )
        stride, padding, dilation, groups = ctx.geometry
        need_dy, need_x, need_w = ctx.needs_input_grad[:3]
        g_dy = g_x = g_w = None
        with torch.no_grad():
            if need_dy:
                g_dy = dy.new_zeros(()) if gx is None else F.conv2d(gx, w, None, *ctx.geometry)
                if gw is not None:
                    g_dy = g_dy + F.conv2d(x, gw, None, stride, padding, dilation, groups)
                if gb is not None:
                    g_dy = g_dy + gb.view(1, -1, 1, 1)
                g_dy = g_dy.expand_as(dy)
            if need_x and gw is not None:
                g_x = _backward(dy, x, gw, ctx.geometry, (True, False, False))[0]
            if need_w and gx is not None:
                g_w = _backward(dy, gx, w, ctx.geometry, (False, True, False))[1]
        return g_dy, g_x, g_w, None, None


def _backward(dy, x, w, geometry, mask):
    """The gradients of ``conv2d(x, w, b)`` at output cotangent ``dy`` that ``mask`` asks for."""
    stride, padding, dilation, groups = geometry
    return torch.ops.aten.convolution_backward(
        dy,
        x,
        w,
        [w.shape[0]],
        list(stride),
        list(padding),
        list(dilation),
        False,
        [0, 0],
        groups,
        list(mask),
    )
