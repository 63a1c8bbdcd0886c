"""Compose a run config from files: a ``defaults:`` list of base files, then the file itself.

``defaults: [base/compositional.yaml, other.yaml]`` names YAML files relative to the folder of the
file that lists them. Each base is read the same way (strictly: UTF-8, no duplicate keys) and may
have its own ``defaults``; the layers are merged in order, depth first: a base's own bases, the
base, the next base, ..., the file itself. Mappings merge key by key; a list or a value replaces the
one before it (omegaconf's merge). A file may be reached only once (no cycle, no diamond), so
every key has one obvious source. ``defaults`` itself never reaches the resolved config.

Router templates may also write ``{copies: N, type: ..., args: ...}`` in a slot's candidate list:
N copies of that candidate (:func:`expand_copies`), expanded on load.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metacompose.config.errors import ConfigError
from metacompose.yaml_io import YamlFileError, load_yaml


@dataclass
class Layer:
    """One file of a composed config: its path (as reached) and its mapping without ``defaults``."""

    path: Path
    raw: dict[str, Any]


def read_layers(path: Path, chain: tuple[Path, ...] = ()) -> list[Layer]:
    """The files behind ``path`` in merge order (its bases first, ``path`` last).

    Raises:
        ConfigError: a file that is missing or not a YAML mapping, a bad ``defaults`` entry, or a
            cycle (the message shows the chain of files).
    """
    if path.resolve() in {p.resolve() for p in chain}:
        names = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"{chain[0]}: defaults cycle: {names}")
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = load_yaml(path, "config file")
    except YamlFileError as e:
        raise ConfigError(str(e)) from e
    if raw is None:  # empty, or comments only: it would train the schema's defaults unasked
        raise ConfigError(
            f"{path}: the file is empty (no keys and no defaults); start from one in configs/, "
            "e.g. configs/sinusoid.yaml"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    bases = raw.pop("defaults", None) or []
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(
            f"{path}: defaults: expected a list of file names (e.g. [base/sinusoid.yaml]), "
            f"got {bases!r}"
        )
    layers: list[Layer] = []
    for name in bases:
        base = path.parent / name
        if not base.exists():
            raise ConfigError(f"{path}: defaults: {name!r} not found ({base})")
        layers += read_layers(base, (*chain, path))
    layers.append(Layer(path, raw))
    seen: dict[Path, Path] = {}
    for layer in layers:
        first = seen.setdefault(layer.path.resolve(), layer.path)
        if first is not layer.path:
            raise ConfigError(f"{path}: defaults: {layer.path} is reached twice")
    return layers


def origins(layers: list[Layer]) -> dict[str, Path]:
    """Dotted key -> the last file that sets it (mappings are walked, lists are leaves)."""
    found: dict[str, Path] = {}

    def walk(node: Any, prefix: str, path: Path) -> None:
        found[prefix] = path
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}", path)

    for layer in layers:
        for key, value in layer.raw.items():
            walk(value, str(key), layer.path)
    return found


def expand_copies(template: dict[str, Any], where: str = "router.template") -> dict[str, Any]:
    """``template`` with every ``{copies: N, ...}`` candidate replaced by N copies of ``{...}``.

    Raises:
        ConfigError: ``nodes`` not a mapping, ``edges`` not a list, or ``copies`` not a whole
            number >= 1 (the message names the item).
    """
    nodes, edges = template.get("nodes"), template.get("edges")
    pairs = isinstance(edges, list) and all(isinstance(e, list) and len(e) == 2 for e in edges)
    if edges is not None and not pairs:
        raise ConfigError(f"{where}.edges={edges!r}: expected a list of [from, to] pairs")
    if nodes is None:
        return template
    if not isinstance(nodes, dict):
        raise ConfigError(f"{where}.nodes={nodes!r}: expected a mapping of slot name -> slot")
    out = copy.deepcopy(template)
    for name, spec in nodes.items():
        cands = spec.get("candidates") if isinstance(spec, dict) else None
        if not isinstance(cands, list):
            continue
        expanded = []
        for i, item in enumerate(cands):
            if not isinstance(item, dict) or "copies" not in item:
                expanded.append(item)
                continue
            n = item["copies"]
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                at = f"{where}.nodes.{name}.candidates[{i}].copies"
                raise ConfigError(f"{at}={n!r}: expected a whole number >= 1")
            one = {k: v for k, v in item.items() if k != "copies"}
            expanded += [copy.deepcopy(one) for _ in range(n)]
        out["nodes"][name]["candidates"] = expanded
    return out
