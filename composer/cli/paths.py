"""Refuse an output path before any work: a folder that is a file, a file that is a folder, a path
under a file, or a place this process cannot write. Each command checks its outputs first."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def check_output_dir(path: str | Path, flag: str) -> Path:
    """``path`` is, or can be created as, a folder this process may write into.

    Args:
        flag: how the user named it (``--out``, or ``out_dir=`` for a config key).

    Raises:
        ValueError: ``FLAG PATH: problem`` on one line; nothing is created.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{_label(flag, path)}: is an existing file, not a folder")
    _check_writable(path, flag)
    return path


def check_output_file(path: str | Path, flag: str) -> Path:
    """``path`` can be written as a file: not a folder, no parent a file, a writable place.

    Raises:
        ValueError: ``FLAG PATH: problem`` on one line; nothing is created.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{_label(flag, path)}: is an existing folder, not a file")
    _check_writable(path, flag)
    return path


def _check_writable(path: Path, flag: str) -> None:
    """The nearest existing ancestor of ``path`` (or ``path`` itself) is a writable folder or file.

    ``os.access`` reads mode bits: it says yes to root in ``/proc`` or ``/sys``, whose file systems
    refuse new entries anyway, so a folder is also probed: an empty folder is made in it and
    removed at once (nothing is left behind)."""
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if existing != path.absolute() and not existing.is_dir():
        raise ValueError(f"{_label(flag, path)}: {existing} is a file, not a folder")
    mode = os.W_OK | os.X_OK if existing.is_dir() else os.W_OK
    if not os.access(existing, mode) or (existing.is_dir() and not _can_create_in(existing)):
        raise ValueError(f"{_label(flag, path)}: {existing} is not writable")


def _can_create_in(folder: Path) -> bool:
    """An entry can be created in ``folder`` (tried: a temporary folder, removed at once)."""
    try:
        probe = tempfile.mkdtemp(prefix=".metacompose-probe-", dir=folder)
    except OSError:
        return False
    with contextlib.suppress(OSError):
        os.rmdir(probe)
    return True


def _label(flag: str, path: Path) -> str:
    return f"{flag}{path}" if flag.endswith("=") else f"{flag} {path}"
