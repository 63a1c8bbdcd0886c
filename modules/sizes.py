"""One-line checks of a constructor's sizes (widths, counts), by argument name."""

from __future__ import annotations


def check_sizes(**sizes: int) -> None:
    """Raise ``ValueError`` naming the first of ``sizes`` (widths and counts, by argument name)
    below 1, e.g. ``filters must be >= 1, got 0``."""
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
