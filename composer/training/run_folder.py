"""The run folder: its name, and handing it to one trainer cleared of what dead trainers left.

A run folder without ``checkpoints/last.ckpt`` belongs to an attempt that died before its first
checkpoint (a finished run always writes one). Once its lock is free, that attempt is dead for
sure: a new run clears its files instead of appending to them. A resumed run keeps the folder and
cuts ``metrics.csv`` back to the checkpoint's step. Either way the temporaries of checkpoint writes
killed half-way are deleted.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from metacompose.config import ConfigError
from metacompose.training.checkpoint_io import remove_stale_temporaries
from metacompose.training.loggers import trim_metrics
from metacompose.training.run_lock import LOCK_NAME, RunLock

# Rank 0 publishes its run folder here; processes that Lightning launches inherit it.
RUN_DIR_ENV = "METACOMPOSE_RUN_DIR"
# What a trainer writes into its run folder (besides checkpoints/ and the lock).
TRAINER_FILES = ("config.yaml", "metrics.csv", "hparams.yaml", "tensorboard")


def run_dir_for(cfg: DictConfig, config_name: str) -> Path:
    """The run folder of a new run, not created; launched ranks reuse rank 0's (``RUN_DIR_ENV``).

    Raises:
        ConfigError: the folder already holds a checkpoint (said before Lightning's start-up
            lines; :func:`open_run_folder` checks again under the lock)."""
    if rank_zero_only.rank != 0 and os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    name = cfg.name or f"{config_name}-{cfg.algo.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.out_dir) / name
    refuse_a_finished_folder(run_dir)
    return run_dir


def refuse_a_finished_folder(run_dir: Path) -> None:
    """A new run does not start in a folder that holds a checkpoint."""
    if (run_dir / "checkpoints" / "last.ckpt").exists():
        raise ConfigError(
            f"name={run_dir.name}: run folder {run_dir} already holds a checkpoint "
            f"(continue it with --resume {run_dir}, or choose another name=)"
        )


def clear_dead_attempt(run_dir: Path) -> list[str]:
    """Delete the trainer files of a dead attempt in ``run_dir``; returns the names deleted."""
    cleared = []
    for name in TRAINER_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        cleared.append(name)
    return cleared


def remove_if_untouched(run_dir: Path) -> bool:
    """Delete ``run_dir`` if a new run that failed left nothing in it but its ``config.yaml`` and
    lock (it died before writing a metric or a checkpoint: a bad value that only the first
    meta-step could reveal); returns whether it was deleted. Anything else is kept."""
    if not run_dir.is_dir():
        return False
    kept = {"config.yaml", LOCK_NAME}
    for path in run_dir.rglob("*"):
        if path.is_file() and not (path.parent == run_dir and path.name in kept):
            return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def open_run_folder(run_dir: Path, *, resume_step: int | None) -> RunLock:
    """Lock ``run_dir`` (creating it) for this trainer and clear what dead trainers left there.

    Args:
        run_dir: the run folder.
        resume_step: the global step of the checkpoint a resumed run starts from; ``None`` for a
            new run.

    Returns:
        the held lock: release it (or leave its ``with`` block) when training ends.

    Raises:
        RunFolderBusy: a live trainer holds the folder.
        ConfigError: a new run's folder already holds a checkpoint, or the folder cannot be created.
    """
    try:
        lock = RunLock(run_dir=run_dir).acquire()
    except OSError as e:
        raise ConfigError(f"out_dir: cannot create run folder {run_dir} ({e.strerror or e})") from e
    try:
        ckpt_dir = run_dir / "checkpoints"
        if resume_step is None:
            refuse_a_finished_folder(run_dir)
            cleared = clear_dead_attempt(run_dir)
            if cleared:
                print(
                    f"metacompose: {run_dir} held files of an attempt that died before its first "
                    f"checkpoint; cleared {', '.join(cleared)}",
                    file=sys.stderr,
                )
        else:
            trim_metrics(run_dir / "metrics.csv", before_step=resume_step)
        remove_stale_temporaries(ckpt_dir)
    except BaseException:
        lock.release()
        raise
    return lock
