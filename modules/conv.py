"""The 4-layer convolutional block of the MAML paper (conv-norm-ReLU-pool, x4)."""

from __future__ import annotations

import torch
from torch import nn

from metacompose.modules.base import TypedModule
from metacompose.modules.batch_norm import TaskBatchNorm2d, has_hooks, inside_vmap
from metacompose.modules.conv2d import conv2d
from metacompose.modules.sizes import check_sizes
from metacompose.modules.space import Space

NORMS = ("batch", "group", "none")
CHANNELS_LAST_MIN_BATCH = 1  # on CPU, batches of at least this many images run channels-last


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return TaskBatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(num_groups=min(8, channels), num_channels=channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; known: {NORMS}")


class ConvBlock(TypedModule):
    """``image[C, H, W] -> vec[filters * h * w]``: ``depth`` x (3x3 conv, norm, ReLU, 2x2 max-pool).

    With the defaults on 28x28 inputs this is the MAML/Omniglot network body (64 features out).

    Args:
        in_channels: input channels ``C``.
        image_size: input height and width (square images).
        filters: channels of every conv layer.
        depth: number of conv-norm-ReLU-pool stages.
        norm: ``"batch"`` (per-batch statistics, no running stats), ``"group"`` or ``"none"``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        filters: int = 64,
        depth: int = 4,
        norm: str = "batch",
    ) -> None:
        check_sizes(in_channels=in_channels, image_size=image_size, filters=filters, depth=depth)
        size = image_size
        for _ in range(depth):
            size //= 2
        if size < 1:
            raise ValueError(f"image_size {image_size} is too small for {depth} pooling stages")
        super().__init__(
            in_space=Space("image", (in_channels, image_size, image_size)),
            out_space=Space("vec", filters * size * size),
            in_channels=in_channels,
            image_size=image_size,
            filters=filters,
            depth=depth,
            norm=norm,
        )
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(depth):
            layers += [
                nn.Conv2d(channels, filters, kernel_size=3, padding=1),
                _norm(norm, filters),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = filters
        self.layers = nn.Sequential(*layers)
        for layer in self.layers:
            if isinstance(layer, nn.Conv2d):  # stored as the convolutions read them: see forward
                cl = layer.weight.detach().contiguous(memory_format=torch.channels_last)
                layer.weight = nn.Parameter(cl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, filters * h * w)``.

        Each stage runs as conv, norm, max-pool, ReLU: max-pooling commutes with ReLU (both in value
        and in gradient), so pooling first quarters the ReLU's work (a second-order MAML task of
        conv4-64, 5-way 1-shot: ~82 -> ~67 ms, one thread). On CPU the activations are kept
        channels-last, where max-pool with indices is vectorised (~10x faster forward, ~1.7x
        forward and backward than NCHW on a 75x64x28x28 map) and conv is ~10% faster. Batch norm and
        max-pool run fused (``TaskBatchNorm2d.pooled``: pool first, then normalise the quarter-size
        map; ~1.1x a second-order meta-iteration at one and five inner steps). With that and the
        closed-form double backward of batch norm, a 1-shot support set is faster channels-last too
        (~1.03x at five inner steps; it was ~1.1x slower with torch's double backward), so
        ``CHANNELS_LAST_MIN_BATCH`` is 1. The conv weights are stored channels-last too, so that
        neither the convolutions nor the inner loop's update (``w - lr * dw``: the backward kernel
        writes ``dw`` channels-last) copy them into that layout at every call (~1.03x at five
        inner steps); their values, state dicts and checkpoints are the same in either layout.
        """
        layout = _channels_last if x.shape[0] >= CHANNELS_LAST_MIN_BATCH else _as_is
        h = layout(x)
        for i in range(0, len(self.layers), 4):
            conv, norm, relu, pool = (self.layers[i + j] for j in range(4))
            h = layout(_conv(conv, h))
            fuse = isinstance(norm, TaskBatchNorm2d) and not has_hooks(pool)
            h = relu(norm.pooled(h) if fuse else pool(norm(h)))
        return h.flatten(1)


def _conv(conv: nn.Conv2d, h: torch.Tensor) -> torch.Tensor:
    """``conv(h)``, by :func:`~metacompose.modules.conv2d.conv2d` (the fast double backward) unless
    a hook could watch the call."""
    if has_hooks(conv):
        return conv(h)
    return conv2d(
        h,
        conv.weight,
        conv.bias,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
    )


def _as_is(h: torch.Tensor) -> torch.Tensor:
    return h


def _channels_last(h: torch.Tensor) -> torch.Tensor:
    """``h`` in channels-last layout on CPU (a no-op elsewhere and when it already is).

    Written as permute-contiguous-permute rather than ``contiguous(memory_format=...)``, which
    ``vmap`` does not support. A single-channel input is already laid out channels-last, but conv
    only sees it when the channel stride says so (then its output is channels-last too, sparing a
    transposing copy of the largest activation and of its gradient).
    """
    if h.device.type != "cpu":
        return h
    if h.shape[1] == 1 and not inside_vmap(h):
        return h.as_strided(h.shape, (h.stride(0), 1, h.stride(2), h.stride(3)))
    return h.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
