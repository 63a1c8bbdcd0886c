"""Checkpoint I/O that never leaves a truncated file and never unpickles code."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

TMP_SUFFIX = ".tmp"  # atomic_save writes ``.NAME.<random>.tmp`` next to ``NAME``, then renames it


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted or read; the message names the file."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    Raises:
        CheckpointError: the file cannot be written (full disk, permissions); ``path`` is unchanged.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot write checkpoint ({e.strerror or e})") from e
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise CheckpointError(f"{path}: cannot write checkpoint ({e.strerror or e})") from e
        raise


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files a killed :func:`atomic_save` left in ``folder``.

    Only safe while no process writes ``folder`` (the caller holds the run folder's lock).
    Returns the deleted files.
    """
    stale = sorted(Path(folder).glob(f".*{TMP_SUFFIX}")) if Path(folder).is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint a user means: a ``.ckpt`` file, or a run folder's ``checkpoints/last.ckpt``.

    Raises:
        CheckpointError: a folder that holds no ``checkpoints/last.ckpt``.
    """
    path = Path(path)
    if not path.is_dir():
        return path
    last = path / "checkpoints" / "last.ckpt"
    if last.is_file():
        return last
    if (path / "config.yaml").is_file():
        raise CheckpointError(f"{path}: the run holds no checkpoint yet (no checkpoints/last.ckpt)")
    raise CheckpointError(
        f"{path}: a folder, not a checkpoint (give a .ckpt file or a run folder holding "
        "checkpoints/last.ckpt)"
    )


def safe_load(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)``: tensors and plain containers only; code never runs.

    Raises:
        CheckpointError: missing, truncated, corrupt or hostile (pickled code) file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: refused to load checkpoint: the file is empty (0 bytes)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load checkpoint: it is corrupt, or it holds pickled objects other "
            "than tensors and plain containers (loaded with weights_only=True; nothing was run)"
        ) from e
    except Exception as e:  # truncated zip, bad magic, ...: all mean "refuse"
        reason = " ".join(str(e).split())[:200]
        raise CheckpointError(
            f"{path}: refused to load checkpoint: truncated or not a torch checkpoint "
            f"({type(e).__name__}: {reason})"
        ) from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a checkpoint (top level is {type(obj).__name__})")
    return obj
