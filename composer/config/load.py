"""Load a YAML config onto the typed schema, apply ``key=value`` overrides, fail early and clearly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from metacompose.config.errors import ConfigError
from metacompose.config.schema import RunConfig
from metacompose.config.validate import validate
from metacompose.yaml_io import YamlFileError, describe_yaml_error, load_yaml

__all__ = ["ConfigError", "load_config", "to_yaml"]


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Read ``path``, merge it onto :class:`RunConfig`, apply dotted ``overrides``, resolve
    interpolations and validate every value (:func:`metacompose.config.validate.validate`).

    Raises:
        ConfigError: missing, unreadable or non-UTF-8 file, YAML syntax error, duplicate key,
            unknown key, wrong type, unresolvable interpolation, bad value or a bad override; the
            one-line message names the file and key.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = load_yaml(path, "config file")
    except YamlFileError as e:
        raise ConfigError(str(e)) from e
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    for key, value in raw.items():
        if key in SECTIONS and not isinstance(value, dict | None):
            raise ConfigError(f"{path}: {key}: expected a mapping of keys, got {_show(value)}")
    schema = OmegaConf.structured(RunConfig)
    try:
        cfg = OmegaConf.merge(schema, OmegaConf.create(raw))
    except OmegaConfBaseException as e:
        raise ConfigError(f"{path}: {_describe(e)}") from e
    for item in overrides:
        cfg = _apply_override(cfg, item, path)
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{path}: cannot resolve an interpolation: {_describe(e)}") from e
    if str(cfg.enforce.mode).lower() == "false":  # YAML reads a bare ``off`` as false
        cfg.enforce.mode = "off"
    validate(cfg, path)
    return cfg


def _apply_override(cfg: DictConfig, item: str, path: Path) -> DictConfig:
    if "=" not in item:
        raise ConfigError(
            f"{path}: override {item!r} must look like key=value (e.g. trainer.max_steps=500)"
        )
    key = item.split("=", 1)[0].strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{path}: override {item!r}: empty key (expected key=value, e.g. seed=1)")
    try:
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
    except OmegaConfBaseException as e:
        raise ConfigError(f"{path}: override {key}: {_describe(e)}") from e
    except yaml.YAMLError as e:  # the value is not YAML (e.g. "{a:[1]}" lacks a space)
        raise ConfigError(
            f"{path}: override {key}: value is not valid YAML ({describe_yaml_error(e)})"
        ) from e


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


# the sections of RunConfig: each a mapping of keys
SECTIONS = ("task", "model", "algo", "data", "optim", "trainer", "router", "report", "enforce")


def _show(value: Any) -> str:
    return " ".join(repr(value).split())[:80]


def _describe(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    msg = " ".join(str(e).split("\n")[0].split())
    if "Key '" in msg and "not in" in msg:
        return f"unknown key {key!r}" if key else msg
    return f"key {key!r}: {msg}" if key else msg
