"""Reusable neural subnetworks with typed interfaces, callable functionally with explicit params."""

from metacompose.modules.activations import ACTIVATIONS, make_activation
from metacompose.modules.base import TypedModule
from metacompose.modules.context_mlp import ContextMLP
from metacompose.modules.conv import ConvBlock
from metacompose.modules.linear import ClassificationHead, Identity, Linear, RegressionHead
from metacompose.modules.mlp import MLPBlock, ResidualMLPBlock
from metacompose.modules.registry import MODULE_TYPES, build_module
from metacompose.modules.set_encoder import SetEncoder
from metacompose.modules.space import Space

__all__ = [
    "ACTIVATIONS",
    "MODULE_TYPES",
    "ClassificationHead",
    "ContextMLP",
    "ConvBlock",
    "Identity",
    "Linear",
    "MLPBlock",
    "RegressionHead",
    "ResidualMLPBlock",
    "SetEncoder",
    "Space",
    "TypedModule",
    "build_module",
    "make_activation",
]
