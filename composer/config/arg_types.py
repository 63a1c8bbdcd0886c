"""Values of plain YAML data against a builder's type annotations: ``where.key=value: expected
TYPE``, without building anything."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import ListConfig

from metacompose.config.errors import ConfigError


def show(value: Any) -> str:
    """``value`` as the user wrote it: ``null``, ``[1, 2]``, ``1e+300``."""
    if value is None:
        return "null"
    if isinstance(value, (list, ListConfig)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


def check_value(value: Any, annotation: Any) -> bool:
    """Whether ``value`` (plain YAML data) fits a simple type annotation; unknown types fit."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(check_value(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:  # finite: no builder argument means anything by NaN or infinity
        return type(value) in (int, float) and math.isfinite(value)
    if annotation is str:
        return isinstance(value, str)
    if annotation is Path:
        return isinstance(value, (str, Path))
    if origin in (list, tuple) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(args) == len(value) and all(map(check_value, value, args))
        inner = args[0] if args else Any
        return all(check_value(v, inner) for v in value)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def check_arg_types(fn: Callable[..., Any], kwargs: dict[str, Any], where: str) -> None:
    """Each of ``kwargs`` against ``fn``'s annotations: ``where.key=value: expected TYPE``."""
    import typing

    try:
        hints = typing.get_type_hints(fn.__init__ if isinstance(fn, type) else fn)
    except Exception:  # unresolvable annotations: nothing to check against
        return
    for key, value in kwargs.items():
        hint = hints.get(key)
        if hint is not None and not check_value(value, hint):
            shown = show(value)
            if _has_non_finite(value):
                raise ConfigError(
                    f"{where}.{key}={shown}: must be finite (expected {_type_name(hint)})"
                )
            raise ConfigError(f"{where}.{key}={shown}: expected {_type_name(hint)}")


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(map(_has_non_finite, value))
    if isinstance(value, str):  # an override's nan / inf / .inf arrives as text
        try:
            return not math.isfinite(float(value.lstrip("+-").lstrip(".") or "x"))
        except ValueError:
            return False
    return isinstance(value, float) and not math.isfinite(value)


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
