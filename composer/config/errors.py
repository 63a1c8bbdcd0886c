"""The error every bad config, override or input file raises: one line naming the file and key."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path


class ConfigError(ValueError):
    """A bad config: the message names the file and the key at fault, on one line."""


def in_file(path: str | Path, error: BaseException) -> ConfigError:
    """``error`` as a :class:`ConfigError` whose line starts with the config file ``path`` (as the
    validator's do), unless it already names it."""
    message = " ".join(str(error).split())
    if message.startswith(f"{path}:"):
        return ConfigError(message)
    return ConfigError(f"{path}: {message}")


def under(section: str, error: BaseException, keys: Iterable[str]) -> ConfigError:
    """``error``, raised while building from the mapping ``section`` (e.g. ``task.args``), as a
    :class:`ConfigError` naming the key as the user wrote it: ``section.key=...`` when the message
    starts with one of ``keys`` (the keys the user set there), else ``section: message``."""
    message = " ".join(str(error).split())
    name = re.match(r"[A-Za-z_]\w*(?=[=: ]|$)", message)
    if name is not None and name.group() in set(keys):
        return ConfigError(f"{section}.{message}")
    return ConfigError(f"{section}: {message}")
