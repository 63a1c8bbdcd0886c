"""Image ops of the IR that stay structured: a convolution and a max-pool on the flat layout.

An image ``(C, H, W)`` is a vector of width ``C * H * W`` in row-major order (torch's
``flatten(1)``), as in :mod:`~metacompose.symbolic.conv`. Lowering a conv to its dense matrix is
exact but grows with the square of the activation size (a 28x28, 32-filter conv net takes
gigabytes); these ops keep the kernel instead, and the tiers apply it with ``conv2d`` forward
and ``conv_transpose2d`` backward (the transpose of the dense matrix, without forming it).

Float soundness: in float64 on CPU torch computes ``conv2d`` / ``conv_transpose2d`` as im2col and
a matrix product (no Winograd or FFT path exists for double), so every output is a sum of
``C * k * k`` products (``C' * k * k`` backward) in some order, and the Higham bound
``gamma_n * sum |w| |x|`` used for Affine layers holds unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

Shape = tuple[int, int, int]


def pooled_shape(shape: Shape, out_channels: int, kernel: int, stride: int, padding: int) -> Shape:
    """``(C', H', W')`` of a conv (or a pool, ``out_channels = C``) on ``shape``."""
    _, h, w = shape
    return (
        out_channels,
        (h + 2 * padding - kernel) // stride + 1,
        (w + 2 * padding - kernel) // stride + 1,
    )


@dataclass(frozen=True, eq=False)
class Conv2d:
    """``F.conv2d(x, weight, bias, stride, padding)`` on the flat layout (zero padding, square
    kernel, no dilation or groups).

    Args:
        weight: ``(C', C, k, k)``; bias: ``(C',)``.
        in_shape: ``(C, H, W)`` of the input image.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    in_shape: Shape
    stride: int = 1
    padding: int = 0

    def __post_init__(self) -> None:
        w = torch.as_tensor(self.weight).detach().to(torch.float64)
        b = torch.as_tensor(self.bias).detach().to(torch.float64)
        shape = tuple(int(d) for d in self.in_shape)
        if w.dim() != 4 or w.shape[2] != w.shape[3] or w.shape[1] != shape[0]:
            raise ValueError(f"Conv2d: weight {tuple(w.shape)} does not fit input {shape}")
        if b.shape != (w.shape[0],):
            raise ValueError(f"Conv2d: bias {tuple(b.shape)} for {w.shape[0]} channels")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "in_shape", shape)

    @property
    def out_shape(self) -> Shape:
        return pooled_shape(
            self.in_shape, self.weight.shape[0], self.weight.shape[2], self.stride, self.padding
        )

    @property
    def fan_in(self) -> int:
        """Products summed per output (forward)."""
        return self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]

    @property
    def fan_out(self) -> int:
        """Products summed per input coefficient (backward), an upper bound."""
        return self.weight.shape[0] * self.weight.shape[2] * self.weight.shape[3]

    def apply(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C*H*W) -> (B, C'*H'*W')`` without bias (``weight`` overrides, e.g. ``|W|``)."""
        w = self.weight if weight is None else weight
        img = x.reshape(-1, *self.in_shape)
        return F.conv2d(img, w, None, stride=self.stride, padding=self.padding).flatten(1)

    def transpose(self, lam: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``lam @ W`` for the dense matrix ``W``: ``(..., C'*H'*W') -> (..., C*H*W)``."""
        w = self.weight if weight is None else weight
        lead = lam.shape[:-1]
        c, h, wd = self.in_shape
        oc, oh, ow = self.out_shape
        k, s, p = self.weight.shape[2], self.stride, self.padding
        pad = (h - ((oh - 1) * s - 2 * p + k), wd - ((ow - 1) * s - 2 * p + k))
        img = lam.reshape(-1, oc, oh, ow)
        out = F.conv_transpose2d(img, w, None, stride=s, padding=p, output_padding=pad)
        return out.reshape(*lead, c * h * wd)

    def bias_map(self, lam: torch.Tensor) -> torch.Tensor:
        """``lam @ full_bias``: ``(..., C'*H'*W') -> (...)`` (also with ``|lam|``, ``|b|``)."""
        oc = self.out_shape[0]
        return lam.reshape(*lam.shape[:-1], oc, -1).sum(-1) @ self.bias

    def bias_flat(self) -> torch.Tensor:
        """The bias repeated over the output positions: ``(C'*H'*W',)``."""
        _, oh, ow = self.out_shape
        return self.bias.repeat_interleave(oh * ow)


@dataclass(frozen=True)
class MaxPool2d:
    """``F.max_pool2d(x, kernel, stride)`` on the flat layout (no padding)."""

    in_shape: Shape
    kernel: int
    stride: int

    @property
    def out_shape(self) -> Shape:
        return pooled_shape(self.in_shape, self.in_shape[0], self.kernel, self.stride, 0)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        img = x.reshape(-1, *self.in_shape)
        return F.max_pool2d(img, self.kernel, self.stride).flatten(1)

    def windows(self) -> torch.Tensor:
        """``(C*H'*W', k*k)`` flat input indices of each output's window."""
        c, h, w = self.in_shape
        _, ho, wo = self.out_shape
        k, s = self.kernel, self.stride
        ci = torch.arange(c).view(c, 1, 1, 1, 1)
        oy = torch.arange(ho).view(1, ho, 1, 1, 1) * s
        ox = torch.arange(wo).view(1, 1, wo, 1, 1) * s
        ky = torch.arange(k).view(1, 1, 1, k, 1)
        kx = torch.arange(k).view(1, 1, 1, 1, k)
        return (ci * h * w + (oy + ky) * w + (ox + kx)).reshape(c * ho * wo, k * k)


def avgpool_conv(shape: Shape, kernel: int, stride: int) -> Conv2d:
    """``F.avg_pool2d(x, kernel, stride)`` as a conv whose kernel is ``1/k^2`` on each channel's
    own input (exact weights; the sum's rounding is covered like any conv's)."""
    c = shape[0]
    w = torch.zeros(c, c, kernel, kernel, dtype=torch.float64)
    w[torch.arange(c), torch.arange(c)] = 1.0 / (kernel * kernel)
    return Conv2d(w, torch.zeros(c, dtype=torch.float64), shape, stride, 0)


IMAGE_OPS = (Conv2d, MaxPool2d)


def numel(shape: Shape) -> int:
    return shape[0] * shape[1] * shape[2]
