"""Where a stability spec named in a run config lives: as given, or under the repository root."""

from __future__ import annotations

from pathlib import Path


def find_spec(name: str | Path) -> Path:
    """``name`` itself when it is absolute or exists from the working directory, else the same
    relative path under the repository root when it exists there (``configs/bounds/*.yaml``), else
    ``name`` (whose loading then says it is missing)."""
    path = Path(name)
    if not path.is_absolute() and not path.is_file():
        import metacompose

        root = Path(metacompose.__file__).resolve().parents[1]
        if (root / path).is_file():
            return root / path
    return path
