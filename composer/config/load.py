"""Load a YAML config (and its ``defaults:`` bases) onto the typed schema, apply ``key=value``
overrides, fail early and clearly."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from metacompose.config.algo_section import check_algo_section
from metacompose.config.booleans import bool_keys, check_booleans
from metacompose.config.compose import Layer, expand_copies, origins, read_layers
from metacompose.config.errors import ConfigError
from metacompose.config.numbers import check_numbers, number_keys
from metacompose.config.schema import RunConfig
from metacompose.config.validate import validate
from metacompose.yaml_io import describe_yaml_error

__all__ = ["ConfigError", "load_config", "to_yaml"]


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Read ``path`` and its ``defaults:`` base files, merge them in order onto :class:`RunConfig`,
    apply dotted ``overrides``, resolve interpolations, expand ``copies`` candidates of the router
    template, validate every value (:func:`metacompose.config.validate.validate`: booleans as
    written, :mod:`metacompose.config.booleans`) and the ``algo`` section against its learner
    (:mod:`metacompose.config.algo_section`).

    Composition (bases relative to the including file, depth first, no cycles):
    :mod:`metacompose.config.compose`.

    Raises:
        ConfigError: missing, unreadable or non-UTF-8 file, YAML syntax error, duplicate key,
            unknown key, wrong type, unresolvable interpolation, bad value, a bad ``defaults``
            entry or a bad override; the one-line message names the file and key, and the base
            file a bad key was set in.
    """
    path = Path(path)
    layers = read_layers(path)
    cfg = inherited = OmegaConf.structured(RunConfig)
    for layer in layers:
        where = "" if layer.path is path else f" (set in {layer.path})"
        for key, value in layer.raw.items():
            if key in SECTIONS and not isinstance(value, dict | None):
                raise ConfigError(
                    f"{path}: {key}: expected a mapping of keys, got {_show(value)}{where}"
                )
        try:
            check_booleans(layer.raw, BOOL_KEYS, where)
            check_numbers(layer.raw, NUMBER_KEYS, where)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e
        if layer.path is path:
            inherited = cfg  # the schema and the base files alone
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.create(layer.raw))
        except OmegaConfBaseException as e:
            raise ConfigError(f"{path}: {_describe(e)}{where}") from e
    written = copy.deepcopy(cfg)
    for item in overrides:
        cfg = _apply_override(cfg, item, path)
    try:
        # an interpolation into a boolean key, as its target resolves untyped (omegaconf: 2 -> true)
        untyped = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
        check_booleans(OmegaConf.to_container(untyped, resolve=True), BOOL_KEYS)
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{path}: cannot resolve an interpolation: {_describe(e)}") from e
    except ConfigError as e:
        raise ConfigError(f"{path}: {e} (through an interpolation)") from e
    if str(cfg.enforce.mode).lower() == "false":  # YAML reads a bare ``off`` as false
        cfg.enforce.mode = "off"
    try:
        cfg.router.template = expand_copies(OmegaConf.to_container(cfg.router.template))
        validate(cfg, path)
        check_algo_section(cfg, inherited, path, written=written, composed=len(layers) > 1)
    except ConfigError as e:
        where = _set_in(str(e), path, layers, overrides)
        raise ConfigError(f"{_prefixed(str(e), path)}{where}") from e
    return cfg


def _prefixed(message: str, path: Path) -> str:
    return message if message.startswith(f"{path}: ") else f"{path}: {message}"


def _set_in(message: str, path: Path, layers: list[Layer], overrides: Sequence[str]) -> str:
    """`` (set in <base file>)`` when the key a message names was last set by a base file."""
    rest = message.removeprefix(f"{path}: ")
    key = rest.split("=", 1)[0].split(":", 1)[0].split(" ", 1)[0].split("[", 1)[0]
    overridden = (item.split("=", 1)[0].strip() for item in overrides)
    if any(key == o or key.startswith(f"{o}.") for o in overridden):
        return ""
    source = origins(layers).get(key)
    return f" (set in {source})" if source is not None and source is not path else ""


def _apply_override(cfg: DictConfig, item: str, path: Path) -> DictConfig:
    if "=" not in item:
        raise ConfigError(
            f"{path}: override {item!r} must look like key=value (e.g. trainer.max_steps=500)"
        )
    key = item.split("=", 1)[0].strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{path}: override {item!r}: empty key (expected key=value, e.g. seed=1)")
    try:
        given = OmegaConf.from_dotlist([item])
        check_booleans(OmegaConf.to_container(given), BOOL_KEYS)
        check_numbers(OmegaConf.to_container(given), NUMBER_KEYS)
        return OmegaConf.merge(cfg, given)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e
    except OmegaConfBaseException as e:
        said = _describe(e)  # names the key already when it says what was expected
        said = said if said.startswith((f"{key}=", f"{key}:")) else f"{key}: {said}"
        raise ConfigError(f"{path}: override {said}") from e
    except yaml.YAMLError as e:  # the value is not YAML (e.g. "{a:[1]}" lacks a space)
        raise ConfigError(
            f"{path}: override {key}: value is not valid YAML ({describe_yaml_error(e)})"
        ) from e


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


# the sections of RunConfig: each a mapping of keys
SECTIONS = (
    "task", "model", "algo", "data", "optim", "trainer", "router", "report", "enforce", "restart",
)  # fmt: skip
BOOL_KEYS = bool_keys(RunConfig)  # true or false as written (omegaconf reads 2 as true)
NUMBER_KEYS = number_keys(RunConfig)  # numbers as written (omegaconf reads '0.1' as 0.1)


def _show(value: Any) -> str:
    return " ".join(repr(value).split())[:80]


# omegaconf's "Value 'abc' of type 'str' could not be converted to Integer", in the user's words
_CONVERSION = re.compile(r"Value '(.*)' of type '\w+' could not be converted to (\w+)")
_EXPECTED = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}


def _describe(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    msg = " ".join(str(e).split("\n")[0].split())
    if "Key '" in msg and "not in" in msg:
        return f"unknown key {key!r}" if key else msg
    wrong = _CONVERSION.search(msg)
    if wrong and key:
        value, kind = wrong.groups()
        value = value if value.isprintable() else repr(value)
        if value.startswith("[") or value.startswith("{"):
            value = "a list" if value.startswith("[") else "a mapping"
            return f"{key}: expected {_EXPECTED.get(kind, kind.lower())}, got {value}"
        return f"{key}={value}: expected {_EXPECTED.get(kind, kind.lower())}"
    return f"key {key!r}: {msg}" if key else msg
