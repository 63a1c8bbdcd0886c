"""Transductive batch norm (per-batch statistics, as in MAML) with a closed-form double backward.

Second-order MAML differentiates each inner step's gradient, so batch norm's *backward* is itself
differentiated. Torch's generic double backward of the fused kernel
(``NativeBatchNormBackwardBackward0``) spends ~46 elementwise multiplies per call on the full
activation; on a 1-shot support set of conv4 it was ~18% of a 5-step meta-iteration. Here the
backward is a function of its own (:class:`_BatchNormBackward`) whose backward is the closed form
below: three reductions and three fused multiply-adds over the activation.

Notation, per channel, over the ``N = B * H * W`` elements it normalises (``<v>`` is their mean):
``r = 1 / sqrt(var + eps)``, ``xh = (x - <x>) r``, ``y = w xh + b``. The backward of a cotangent
``dy`` is ``db = sum dy``, ``dw = sum dy xh``, ``dx = w r P(dy)`` with the projection
``P(v) = v - <v> - xh <v xh>``, which is self-adjoint and is also ``d xh / d x`` divided by ``r``.
Given cotangents ``(gx, gw, gb)`` of ``(dx, dw, db)``:

- ``g_dy = gb + gw xh + w r P(gx)``
- ``g_w = r sum gx P(dy)``
- ``g_x = r P(h) - (w S r^2 / N) xh``, with ``h = gw dy - w r (gx <dy xh> + dy <gx xh>)`` and
  ``S = sum gx P(dy)``; ``<h>`` and ``<h xh>`` reduce to products of channel means, so ``g_x`` is
  one per-channel linear combination of ``dy``, ``gx`` and ``xh``.

The reference test (``tests/modules/test_batch_norm.py``) checks all three against autograd through
the textbook formula in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metacompose.modules.transforms import inside_transform

DIMS = (0, 2, 3)  # the dimensions a (B, C, H, W) activation is normalised over


class TaskBatchNorm2d(nn.Module):
    """Batch norm over the current batch only (transductive, as in MAML): no running statistics.

    Nothing is shared across tasks, so it is safe inside a vmapped inner loop. On plain tensors it
    runs the fused kernels forward and backward (channels-last aware) with the closed-form double
    backward of this module's docstring. Under ``torch.func`` transforms it runs torch's own fused
    kernel (``F.batch_norm``: custom autograd functions would need functorch rules), except inside
    ``vmap`` and under autocast, where it runs plain tensor ops: torch 2.13's batching rule of the
    fused double backward gives wrong second-order gradients (~1e-2 off in float64,
    tests/composer/algorithms/test_conv_meta_gradients.py), and the fused backward mixes dtypes
    under bf16 inside ``torch.func.grad``. All paths equal
    ``nn.BatchNorm2d(track_running_stats=False)``.

    Args:
        channels: number of channels ``C`` of the ``(B, C, H, W)`` input.
        eps: added to the variance.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``, normalised per channel over ``B, H, W``."""
        w, b = self.weight, self.bias
        if torch.is_autocast_enabled(x.device.type) or inside_vmap(x, w, b):
            return plain_batch_norm(x, w, b, eps=self.eps)
        if inside_transform(x, w, b):
            return F.batch_norm(x, None, None, w, b, training=True, eps=self.eps)
        return batch_norm(x, w, b, eps=self.eps)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """``max_pool2d(self(x), 2)`` (same values up to rounding, same gradients), without the
        full-size normalised activation when it can: see :func:`batch_norm_max_pool`. Otherwise
        (a ``torch.func`` transform, autocast, a scale ``<= 0``, an input that is not channels-last
        float32/float64) it is ``max_pool2d(self(x), 2)`` itself, also when a hook could watch or
        change the normalised activation or its gradient (the verifier's fixed statistics are
        forward hooks)."""
        w, b = self.weight, self.bias
        if (
            has_hooks(self)
            or torch.is_autocast_enabled(x.device.type)
            or inside_transform(x, w, b)
            or x.dtype not in (torch.float32, torch.float64)
            or not x.is_contiguous(memory_format=torch.channels_last)
            or not bool((w > 0).all())
        ):
            return F.max_pool2d(self(x), 2)
        return batch_norm_max_pool(x, w, b, eps=self.eps)


def has_hooks(module: nn.Module) -> bool:
    """Whether calling ``module`` would run a hook (its own or a global one), forward or backward."""
    g = nn.modules.module
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
        or g._global_forward_hooks
        or g._global_forward_pre_hooks
        or g._global_backward_hooks
        or g._global_backward_pre_hooks
    )


def batch_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, *, eps: float) -> torch.Tensor:
    """Training-mode batch norm of ``x: (B, C, H, W)`` by the fused kernels, twice differentiable
    (the closed-form double backward). Not for ``vmap`` (see :class:`TaskBatchNorm2d`)."""
    return _BatchNorm.apply(x, w, b, eps)


def batch_norm_max_pool(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, *, eps: float
) -> torch.Tensor:
    """``max_pool2d(batch_norm(x), 2)`` for a positive scale ``w``, fused.

    With ``w > 0`` batch norm is increasing in each channel, so it commutes with max-pooling: pool
    ``x`` first, then normalise the quarter-size result with the statistics of the whole ``x``. The
    full-size normalised activation is never written, and the backward writes ``dx`` in one pass
    plus a scatter at the pooled positions instead of zero-filling the pool's gradient and running
    batch norm's backward over it (conv4's 75-image query layer: ~40 -> ~31 ms forward and
    backward). The backward with ``create_graph`` (an inner step of second-order MAML) is the
    unfused composition: the pool's backward, then :class:`_BatchNormBackward`.
    """
    return _BatchNormMaxPool.apply(x, w, b, eps)


def plain_batch_norm(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, *, eps: float
) -> torch.Tensor:
    """The textbook formula in plain tensor ops (works under ``vmap`` and autocast)."""
    mean = x.mean(dim=DIMS, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=DIMS, keepdim=True)
    x_hat = (x - mean) * torch.rsqrt(var + eps)
    return x_hat * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)


def inside_vmap(*tensors: torch.Tensor) -> bool:
    """Whether any of ``tensors`` is (or wraps, under ``torch.func.grad``) a ``vmap`` batched
    tensor."""
    functorch = torch._C._functorch
    for x in tensors:
        while functorch.is_functorch_wrapped_tensor(x):
            if functorch.is_batchedtensor(x):
                return True
            x = functorch.get_unwrapped(x)
    return False


class _BatchNorm(torch.autograd.Function):
    """Forward: the fused training-mode kernel. Backward: :class:`_BatchNormBackward`."""

    @staticmethod
    def forward(ctx, x, w, b, eps: float):
        y, mean, invstd = torch.native_batch_norm(x, w, b, None, None, True, 0.0, eps)
        ctx.save_for_backward(x, w, mean, invstd)
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx, dy):
        x, w, mean, invstd = ctx.saved_tensors
        dx, dw, db = _BatchNormBackward.apply(dy, x, w, mean, invstd, ctx.eps)
        return dx, dw, db, None


class _BatchNormMaxPool(torch.autograd.Function):
    """:func:`batch_norm_max_pool`: ``x: (B, C, H, W) -> (B, C, H / 2, W / 2)``."""

    @staticmethod
    def forward(ctx, x, w, b, eps: float):
        mean, invstd = _statistics(x, eps)
        pooled, idx = F.max_pool2d(x, 2, return_indices=True)
        alpha = w * invstd
        out = torch.addcmul((b - mean * alpha).view(1, -1, 1, 1), pooled, alpha.view(1, -1, 1, 1))
        ctx.save_for_backward(x, w, mean, invstd, idx, pooled)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, g):
        x, w, mean, invstd, idx, pooled = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a differentiable composition
            full = torch.ops.aten.max_pool2d_with_indices_backward(
                g, x, [2, 2], [2, 2], [0, 0], [1, 1], False, idx
            )
            dx, dw, db = _BatchNormBackward.apply(full, x, w, mean, invstd, ctx.eps)
            return dx, dw, db, None
        # y = w xh + b pooled at the argmax: db = sum g, dw = sum g xh(pooled), and
        # dx = w r P(G), G = g scattered to the argmax, <G> = db / n, <G xh> = dw / n
        n = x.numel() // x.shape[1]
        view = (1, -1, 1, 1)
        # db = sum g, dw = sum g (pooled - mean) r: the channel sums of the fused backward kernel
        # (~8x the reduction of a product on a channels-last map)
        _, dw, db = torch.ops.aten.native_batch_norm_backward(
            g, pooled, None, None, None, mean, invstd, True, ctx.eps, [False, True, True]
        )
        wr = w * invstd
        k = -wr * invstd * dw / n  # dx's coefficient of x (x - mean unformed: ~eps |mean| / std)
        dx = torch.addcmul((-wr * db / n - k * mean).view(view), x, k.view(view))
        _scatter_add(dx, idx, g * wr.view(view))
        return dx, dw, db, None


def _statistics(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and ``1 / sqrt(var + eps)`` of ``x`` over ``(B, H, W)``, without writing a
    normalised copy: the statistics pass of torch's own fused batch norm
    (``torch.batch_norm_update_stats``, on CPU), so the fused path normalises with exactly the
    statistics of ``F.batch_norm``. On conv4's channels-last 75-image query map it takes ~1 ms (a
    blocked matrix-product version took ~3 ms, ``torch.var_mean`` ~25 ms), on a 1-shot support map
    ~0.05 ms. On other devices it is ``torch.var_mean``."""
    if x.device.type == "cpu":
        mean, var = torch.batch_norm_update_stats(x, None, None, 0.0)
    else:
        var, mean = torch.var_mean(x, dim=DIMS, correction=0)
    return mean, torch.rsqrt(var + eps)


def _scatter_add(dst: torch.Tensor, idx: torch.Tensor, src: torch.Tensor) -> None:
    """``dst[b, c].view(-1)[idx[b, c]] += src[b, c]`` in place, for ``dst`` in NCHW or
    channels-last memory (``idx``: max-pool's flat indices within each ``H x W`` plane)."""
    b, c = dst.shape[:2]
    if dst.is_contiguous():
        dst.view(b, c, -1).scatter_add_(2, idx.reshape(b, c, -1), src.reshape(b, c, -1))
        return
    flat = dst.permute(0, 2, 3, 1).view(b, -1, c)  # channels-last: (B, H * W, C), a view
    flat.scatter_add_(
        1, idx.permute(0, 2, 3, 1).reshape(b, -1, c), src.permute(0, 2, 3, 1).reshape(b, -1, c)
    )


class _BatchNormBackward(torch.autograd.Function):
    """``(dy, x, w) -> (dx, dw, db)`` by the fused backward kernel; its own backward is the closed
    form of the module docstring (``mean`` and ``invstd`` are the forward's saved statistics).

    The channel sums ride on the fused kernel too: ``db = sum dy`` and ``dw = sum dy xh`` are this
    function's own outputs, the fused backward of ``gx`` gives ``w r P(gx)`` (a term of ``g_dy``),
    ``sum gx xh`` and ``sum gx`` in one call, and the weight gradient of a batch norm with mean 0
    and scale 1 is ``sum gx dy``. Everything else is three multiply-adds per output.
    """

    @staticmethod
    def forward(ctx, dy, x, w, mean, invstd, eps: float):
        dx, dw, db = torch.ops.aten.native_batch_norm_backward(
            dy, x, w, None, None, mean, invstd, True, eps, [True, True, True]
        )
        ctx.save_for_backward(dy, x, w, mean, invstd, dw, db)
        ctx.eps = eps
        return dx, dw, db

    @staticmethod
    def backward(ctx, gx, gw, gb):
        dy, x, w, mean, invstd, dw, db = ctx.saved_tensors
        if torch.is_grad_enabled() and any(
            t.requires_grad for t in (gx, gw, gb, dy, x, w) if t is not None
        ):
            raise RuntimeError(
                "metacompose batch norm: third-order derivatives are not implemented "
                "(its double backward is closed-form and not differentiable again)"
            )
        with torch.no_grad():
            g_dy, g_x, g_w = _double_backward(ctx.eps, gx, gw, gb, dy, x, w, mean, invstd, dw, db)
        return g_dy, g_x, g_w, None, None, None


def _double_backward(eps, gx, gw, gb, dy, x, w, mean, invstd, dw, db):
    """The closed form of the module docstring: cotangents of ``(dx, dw, db)`` to ``(dy, x, w)``."""
    n = x.numel() // x.shape[1]
    view = (1, -1, 1, 1)
    r, wr = invstd, w * invstd
    # w r P(gx), sum gx xh, sum gx; then sum gx dy
    wrp_gx, gxxh, gx_sum = torch.ops.aten.native_batch_norm_backward(
        gx, x, w, None, None, mean, invstd, True, eps, [True, True, True]
    )
    zero, one = torch.zeros_like(mean), torch.ones_like(invstd)
    gxdy = torch.ops.aten.native_batch_norm_backward(
        gx, dy, None, None, None, zero, one, True, 0.0, [False, True, False]
    )[1]
    dy_m, dyxh_m, gx_m, gxxh_m = db / n, dw / n, gx_sum / n, gxxh / n
    s = gxdy - n * (gx_m * dy_m + gxxh_m * dyxh_m)  # S = sum gx P(dy)
    # h = a dy + c gx (per-channel a, c), so <h> and <h xh> are products of channel means
    a, c = gw - wr * gxxh_m, -wr * dyxh_m
    h_m, hxh_m = a * dy_m + c * gx_m, a * dyxh_m + c * gxxh_m
    # xh = x r - mean r is folded into the per-channel coefficients instead of formed (two passes
    # fewer, 1.025x at five steps); the rounding this adds is ~eps |mean| / std, relative
    k = -r * hxh_m - w * s * r * r / n  # g_x's coefficient of xh
    g_x = torch.addcmul((-r * h_m - k * r * mean).view(view), dy, (r * a).view(view))
    g_x.addcmul_(gx, (r * c).view(view)).addcmul_(x, (k * r).view(view))
    # g_dy = gb + gw xh + w r P(gx)
    g_dy = wrp_gx.add_((gb - gw * r * mean).view(view)).addcmul_(x, (gw * r).view(view))
    return g_dy, g_x, r * s
