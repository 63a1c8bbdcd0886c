"""The error every bad config, override or input file raises: one line naming the file and key."""

from __future__ import annotations

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
