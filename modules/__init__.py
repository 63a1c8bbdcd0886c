"""Reusable neural subnetworks with typed interfaces, callable functionally with explicit params."""

from modules.activations import ACTIVATIONS, make_activation
from modules.base import TypedModule
from modules.conv import ConvBlock
from modules.linear import ClassificationHead, Identity, Linear, RegressionHead
from modules.mlp import MLPBlock, ResidualMLPBlock
from modules.registry import MODULE_TYPES, build_module
from modules.set_encoder import SetEncoder
from modules.space import Space

__all__ = [
    "ACTIVATIONS",
    "MODULE_TYPES",
    "ClassificationHead",
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
