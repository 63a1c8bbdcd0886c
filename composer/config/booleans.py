"""A boolean key of the schema takes ``true`` or ``false`` as written: omegaconf alone would read
``2``, ``1`` or the string ``"y"`` as true (``trainer.deterministic: 2`` ran deterministic)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from typing import Any

from metacompose.config.errors import ConfigError


def bool_keys(schema: type, prefix: str = "") -> list[str]:
    """Dotted keys of the ``bool`` fields of a config dataclass, its sections walked."""
    hints = typing.get_type_hints(schema)
    keys: list[str] = []
    for f in dataclasses.fields(schema):
        hint = hints[f.name]
        if hint is bool:
            keys.append(f"{prefix}{f.name}")
        elif dataclasses.is_dataclass(hint):
            keys += bool_keys(hint, f"{prefix}{f.name}.")
    return keys


def check_booleans(raw: dict[str, Any], keys: Iterable[str], where: str = "") -> None:
    """Each of ``keys`` that ``raw`` (a mapping as written: a file or an override) sets is a YAML
    boolean (or an interpolation, checked once resolved by omegaconf).

    Raises:
        ConfigError: ``KEY=VALUE: expected true or false`` followed by ``where``.
    """
    for key in keys:
        found, node = written_value(raw, key)
        interpolation = isinstance(node, str) and node.strip().startswith("${")
        if found and not isinstance(node, bool) and not interpolation:
            shown = repr(node) if isinstance(node, str) else "null" if node is None else node
            raise ConfigError(f"{key}={shown}: expected true or false{where}")


def written_value(raw: dict[str, Any], key: str) -> tuple[bool, Any]:
    """``(True, value)`` where the mapping ``raw`` sets the dotted ``key``, else ``(False, None)``."""
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node
