"""Multi-layer perceptron blocks: plain and residual."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from metacompose.modules.activations import make_activation
from metacompose.modules.base import TypedModule
from metacompose.modules.space import Space


class MLPBlock(TypedModule):
    """A stack of Linear + activation layers, ``vec[in_features] -> vec[out_features]``.

    Args:
        in_features: input dimension.
        hidden: widths of the hidden layers (may be empty: then it is one Linear layer).
        out_features: output dimension.
        activation: activation between layers (``"relu"``, ``"tanh"``, ...).
        activate_output: also apply the activation after the last layer (use this for a block that
            feeds another block rather than a head).
    """

    def __init__(
        self,
        *,
        in_features: int,
        hidden: list[int] | tuple[int, ...] = (),
        out_features: int,
        activation: str = "relu",
        activate_output: bool = True,
    ) -> None:
        hidden = [int(h) for h in hidden]
        super().__init__(
            in_space=Space("vec", in_features),
            out_space=Space("vec", out_features),
            in_features=in_features,
            hidden=hidden,
            out_features=out_features,
            activation=activation,
            activate_output=activate_output,
        )
        widths = [in_features, *hidden, out_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2 or activate_output:
                layers.append(make_activation(activation))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_features) -> (B, out_features)``."""
        return self.layers(x)


class ResidualMLPBlock(TypedModule):
    """``x + W2 act(W1 x + b1) + b2``, optionally followed by the activation; ``vec[d] -> vec[d]``.

    Args:
        features: input and output dimension ``d``.
        hidden: width of the inner layer.
        activation: the inner activation.
        activate_output: apply the activation to the sum as well.
    """

    def __init__(
        self, *, features: int, hidden: int, activation: str = "relu", activate_output: bool = False
    ) -> None:
        super().__init__(
            in_space=Space("vec", features),
            out_space=Space("vec", features),
            features=features,
            hidden=hidden,
            activation=activation,
            activate_output=activate_output,
        )
        self.inner = nn.Linear(features, hidden)
        self.act = make_activation(activation)
        self.outer = nn.Linear(hidden, features)
        self.out_act = make_activation(activation) if activate_output else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d) -> (B, d)``."""
        return self.out_act(x + self.outer(self.act(self.inner(x))))
