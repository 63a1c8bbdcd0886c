"""Read a YAML file strictly: UTF-8 text only, no duplicate keys, one-line errors naming the file.

A leaf module: run configs (``metacompose.config``) and dataset specs (``metacompose.tasks``) both
read through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlFileError(ValueError):
    """A YAML file that cannot be read; the one-line message names the file (and the line)."""


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping holding the same key twice (YAML says last wins)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                continue
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {first})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def read_text_file(path: str | Path, what: str = "file") -> str:
    """The text of ``path``; a missing, binary or non-UTF-8 file is a one-line :class:`YamlFileError`."""
    path = Path(path)
    if not path.exists():
        raise YamlFileError(f"{path}: {what} not found")
    if not path.is_file():
        raise YamlFileError(f"{path}: {what} is not a file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise YamlFileError(f"{path}: cannot read {what}: {e.strerror or e}") from e
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        raise YamlFileError(f"{path}: not a UTF-8 text file (binary or UTF-16 data)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise YamlFileError(
            f"{path}: not a UTF-8 text file (byte {data[e.start]:#04x} at offset {e.start})"
        ) from e


def load_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """Parse ``path`` with :class:`UniqueKeyLoader`.

    Raises:
        YamlFileError: missing, unreadable, binary or non-UTF-8 file, a syntax error or a duplicate
            key; the one-line message names the file (and the line).
    """
    text = read_text_file(path, what)
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        raise YamlFileError(f"{path}: not valid YAML: {describe_yaml_error(e)}") from e


def describe_yaml_error(e: yaml.YAMLError) -> str:
    """``problem (line L, column C)`` on one line."""
    problem = getattr(e, "problem", None)
    mark = getattr(e, "problem_mark", None)
    if not problem:
        return " ".join(str(e).split())
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{' '.join(problem.split())}{where}"
