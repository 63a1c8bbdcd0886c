"""The explicit table of module types a graph's JSON may name (no import-order registration)."""

from __future__ import annotations

from typing import Any

from metacompose.modules.base import TypedModule
from metacompose.modules.context_mlp import ContextMLP
from metacompose.modules.conv import ConvBlock
from metacompose.modules.linear import ClassificationHead, Identity, Linear, RegressionHead
from metacompose.modules.mlp import MLPBlock, ResidualMLPBlock
from metacompose.modules.set_encoder import SetEncoder

MODULE_TYPES: dict[str, type[TypedModule]] = {
    "Identity": Identity,
    "Linear": Linear,
    "MLPBlock": MLPBlock,
    "ResidualMLPBlock": ResidualMLPBlock,
    "ContextMLP": ContextMLP,
    "ConvBlock": ConvBlock,
    "SetEncoder": SetEncoder,
    "RegressionHead": RegressionHead,
    "ClassificationHead": ClassificationHead,
}


def build_module(type_name: str, args: dict[str, Any]) -> TypedModule:
    """Build a library module from its type name and keyword arguments, with a clear error."""
    try:
        cls = MODULE_TYPES[type_name]
    except KeyError:
        raise ValueError(
            f"unknown module type {type_name!r}; known: {sorted(MODULE_TYPES)}"
        ) from None
    try:
        return cls(**args)
    except TypeError as e:
        raise ValueError(f"bad arguments for module {type_name}: {e}") from e
