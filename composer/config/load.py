"""Load a YAML config onto the typed schema, apply ``key=value`` overrides, fail early and clearly."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from composer.config.schema import RunConfig


class ConfigError(ValueError):
    """A bad config: the message names the file and the key at fault, on one line."""


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Read ``path``, merge it onto :class:`RunConfig`, then apply dotted ``overrides``.

    Raises:
        ConfigError: missing/unreadable file, YAML syntax error, unknown key, wrong type, or a bad
            override; the message names the file and key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(e)}") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e}") from e
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    schema = OmegaConf.structured(RunConfig)
    try:
        cfg = OmegaConf.merge(schema, OmegaConf.create(raw))
    except OmegaConfBaseException as e:
        raise ConfigError(f"{path}: {_describe(e)}") from e
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key = item.split("=", 1)[0]
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as e:
            raise ConfigError(f"{path}: override {key}: {_describe(e)}") from e
        except yaml.YAMLError as e:  # the value is not YAML (e.g. "{a:[1]}" lacks a space)
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"{path}: override {key}: value is not valid YAML ({problem})") from e
    return cfg


def check_kwargs(fn: Any, kwargs: dict[str, Any], where: str) -> None:
    """Bind ``kwargs`` to ``fn``'s signature without calling it; a clear error on a bad key."""
    sig = inspect.signature(fn)
    params = sig.parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key in kwargs:
            if key not in params:
                known = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
                raise ConfigError(
                    f"{where}.{key}: unknown argument of {fn.__name__}; known: {known}"
                )
    try:
        sig.bind(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from e


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def _describe(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    msg = str(e).split("\n")[0]
    if isinstance(e, Exception) and "Key '" in msg and "not in" in msg:
        return f"unknown key {key!r}" if key else msg
    return f"key {key!r}: {msg}" if key else msg


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())
