"""Task families behind one small interface (``TaskFamily.sample`` -> ``TaskBatch``)."""

from collections.abc import Callable

from metacompose.tasks.base import SPLITS, TaskBatch, TaskFamily, derive_seed
from metacompose.tasks.compositional import CompositionalFamily
from metacompose.tasks.digits import DigitsFamily
from metacompose.tasks.fashion_mnist import FashionMNISTFamily
from metacompose.tasks.glyphs import GlyphFamily
from metacompose.tasks.grouped import GroupedRegressionFamily
from metacompose.tasks.grouped_spec import grouped_family
from metacompose.tasks.sinusoid import SinusoidFamily

# name -> a family class, or a function building one (``grouped``: spec file + overrides).
FAMILIES: dict[str, Callable[..., TaskFamily]] = {
    "sinusoid": SinusoidFamily,
    "compositional": CompositionalFamily,
    "glyphs": GlyphFamily,
    "fashion_mnist": FashionMNISTFamily,
    "digits": DigitsFamily,
    "grouped": grouped_family,
}

__all__ = [
    "FAMILIES",
    "SPLITS",
    "CompositionalFamily",
    "DigitsFamily",
    "FashionMNISTFamily",
    "GlyphFamily",
    "GroupedRegressionFamily",
    "SinusoidFamily",
    "TaskBatch",
    "TaskFamily",
    "derive_seed",
    "grouped_family",
]
