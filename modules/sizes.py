"""One-line checks of a constructor's sizes (widths, counts), by argument name."""

from __future__ import annotations

# Past this a width or count is a likely extra digit: a 10^6-wide layer already holds 10^6 weights
# per input, and 10^9 (one typo away) asks for gigabytes and is killed for memory, not refused.
MAX_SIZE = 10**6


def check_sizes(**sizes: int) -> None:
    """Raise ``ValueError`` naming the first of ``sizes`` (widths and counts, by argument name)
    below 1 or above :data:`MAX_SIZE`, e.g. ``filters must be >= 1, got 0``."""
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
        if value > MAX_SIZE:
            raise ValueError(f"{name} must be <= {MAX_SIZE}, got {value}")
