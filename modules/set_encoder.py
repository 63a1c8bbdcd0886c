"""A permutation-invariant set encoder (DeepSets: mean of phi, then rho)."""

from __future__ import annotations

import torch

from metacompose.modules.base import TypedModule
from metacompose.modules.mlp import MLPBlock
from metacompose.modules.space import Space


class SetEncoder(TypedModule):
    """``set[in_features] -> embedding[out_features]``: ``rho(mean_i phi(x_i))``.

    Args:
        in_features: size of one set element (e.g. an input concatenated with its target).
        hidden: width of phi's and rho's hidden layers.
        out_features: embedding size.
        activation: activation inside phi and rho.
    """

    def __init__(
        self,
        *,
        in_features: int,
        hidden: int = 64,
        out_features: int = 32,
        activation: str = "relu",
    ) -> None:
        super().__init__(
            in_space=Space("set", in_features),
            out_space=Space("embedding", out_features),
            in_features=in_features,
            hidden=hidden,
            out_features=out_features,
            activation=activation,
        )
        self.phi = MLPBlock(
            in_features=in_features, hidden=[hidden], out_features=hidden, activation=activation
        )
        self.rho = MLPBlock(
            in_features=hidden,
            hidden=[hidden],
            out_features=out_features,
            activation=activation,
            activate_output=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, in_features) -> (B, out_features)``; invariant to the order of the N elements."""
        return self.rho(self.phi(x).mean(dim=-2))
