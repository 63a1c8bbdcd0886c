"""Activation functions a module may name in its spec (strings keep specs JSON-serialisable)."""

from __future__ import annotations

import torch
from torch import nn


class Sine(nn.Module):
    """``sin(x)``: a periodic activation (as in SIREN), for modules that fit oscillating
    functions; a FiLM scale/shift on the layer before it sets frequency and phase."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "sin": Sine,
}


def make_activation(name: str) -> nn.Module:
    """Build an activation by name; raises ``ValueError`` listing the known names."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}") from None
