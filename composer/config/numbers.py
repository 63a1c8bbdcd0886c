"""A number key of the schema takes a number as written: omegaconf alone turns the quoted string
``'0.001'`` into ``0.001`` (``optim: {lr: '0.001'}`` trained), though a quoted value is a string."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable
from typing import Any

import yaml

from metacompose.config.booleans import written_value
from metacompose.config.errors import ConfigError


def number_keys(schema: type, prefix: str = "") -> list[str]:
    """Dotted keys of the ``int`` and ``float`` fields (optional or not) and of the lists of them
    (``list[int]``) of a config dataclass, its sections walked; a field that also takes a string
    (``int | str``) is not one."""
    hints = typing.get_type_hints(schema)
    keys: list[str] = []
    for f in dataclasses.fields(schema):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            keys += number_keys(hint, f"{prefix}{f.name}.")
        elif _numeric(hint) or (
            typing.get_origin(hint) is list and _numeric(*typing.get_args(hint))
        ):
            keys.append(f"{prefix}{f.name}")
    return keys


def _numeric(hint: Any) -> bool:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kinds = {p for p in (typing.get_args(hint) if union else (hint,)) if p is not type(None)}
    return bool(kinds) and kinds <= {int, float}


def check_numbers(raw: dict[str, Any], keys: Iterable[str], where: str = "") -> None:
    """No key of ``keys`` that ``raw`` (a mapping as written: a file or an override) sets is, or
    lists, a quoted number: a string that YAML reads as a finite number without its quotes
    (``'0.001'``, ``'017'``). Other strings are left to the schema (``lr: abc``: expected a
    number; ``lr: 1e-3``, a string to PyYAML, a number to omegaconf).

    Raises:
        ConfigError: ``KEY='VALUE': a quoted number is a string; write NUMBER without quotes``
            (``NUMBER`` as Python reads the text: ``'017'`` -> 17, not YAML's octal 15) +
            ``where``.
    """
    for key in keys:
        found, node = written_value(raw, key)
        for item in (node if isinstance(node, list) else [node]) if found else []:
            number = _as_number(item) if isinstance(item, str) else None
            if number is not None:
                raise ConfigError(
                    f"{key}={node!r}: a quoted number is a string; write {number!r} "
                    f"without quotes{where}"
                )


def _as_number(text: str) -> int | float | None:
    """The finite number a string reads as when YAML would read it as a number without its
    quotes (Python's reading of it: ``'017'`` -> 17), else None. PyYAML reads ``1e-3`` as a
    string with or without quotes, so a quoted one cannot be told apart (omegaconf converts it)."""
    try:
        unquoted = yaml.safe_load(text.strip())
    except yaml.YAMLError:
        return None
    if not isinstance(unquoted, int | float) or isinstance(unquoted, bool):
        return None
    if not math.isfinite(unquoted):
        return None
    for read in (int, float):
        try:
            return read(text.strip())
        except ValueError:
            continue
    return unquoted
