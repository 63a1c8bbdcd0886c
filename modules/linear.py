"""Affine layers and prediction heads."""

from __future__ import annotations

import torch
from torch import nn

from metacompose.modules.base import TypedModule
from metacompose.modules.space import Space


class Linear(TypedModule):
    """An affine map ``vec[in_features] -> vec[out_features]``.

    Args:
        in_features: input dimension.
        out_features: output dimension.
        bias: whether to add a bias.
    """

    def __init__(self, *, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(
            in_space=Space("vec", in_features),
            out_space=Space("vec", out_features),
            in_features=in_features,
            out_features=out_features,
            bias=bias,
        )
        self.linear = nn.Linear(in_features, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_features) -> (B, out_features)``."""
        return self.linear(x)


class Identity(TypedModule):
    """The identity ``vec[features] -> vec[features]``, without parameters.

    A pass-through candidate for a routed slot: a task that needs no stage there routes to it.

    Args:
        features: dimension of the input and the output.
    """

    def __init__(self, *, features: int) -> None:
        super().__init__(
            in_space=Space("vec", features), out_space=Space("vec", features), features=features
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, features) -> (B, features)``, unchanged."""
        return x


class RegressionHead(Linear):
    """Linear read-out to ``out_features`` real targets (``vec -> vec``)."""


class ClassificationHead(TypedModule):
    """Linear read-out to ``n_classes`` logits (``vec[in_features] -> vec[n_classes]``).

    Args:
        in_features: input dimension.
        n_classes: number of classes (the N of an N-way task).
        zero_init: start from zero weights, so every class starts equally likely (common for ANIL/MAML
            classification heads, and makes the head's init independent of label permutations).
    """

    def __init__(self, *, in_features: int, n_classes: int, zero_init: bool = False) -> None:
        super().__init__(
            in_space=Space("vec", in_features),
            out_space=Space("vec", n_classes),
            in_features=in_features,
            n_classes=n_classes,
            zero_init=zero_init,
        )
        self.linear = nn.Linear(in_features, n_classes)
        if zero_init:
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_features) -> (B, n_classes)`` logits."""
        return self.linear(x)
