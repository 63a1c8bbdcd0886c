"""The error every bad config, override or input file raises: one line naming the file and key."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad config: the message names the file and the key at fault, on one line."""
