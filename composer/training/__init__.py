"""Meta-training on Lightning: task streams, the LightningModule, safe checkpoints, ``train``.

Names are imported on first use (PEP 562), so that ``metacompose.training.checkpoint_io`` and the
other Lightning-free parts load without importing Lightning (``metacompose eval`` starts fast).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "AtomicCheckpointIO": "lightning_io",
    "CheckpointError": "checkpoint_io",
    "atomic_save": "checkpoint_io",
    "checkpoint_file": "checkpoint_io",
    "safe_load": "checkpoint_io",
    "SHARDINGS": "data",
    "MetaDataModule": "data",
    "TaskStream": "data",
    "select_tasks": "data",
    "BadInputError": "guard",
    "BadTaskGuard": "guard",
    "BadTaskWarning": "guard",
    "guarded_meta_step": "guard",
    "check_accelerator": "hardware",
    "GracefulStop": "interrupt",
    "TrainingInterrupted": "interrupted",
    "MetaLearningModule": "module",
    "capture_rng_state": "rng",
    "restore_rng_state": "rng",
    "TrainResult": "run",
    "resolve_resume": "run",
    "train": "run",
    "RunFolderBusy": "run_lock",
    "RunLock": "run_lock",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'metacompose.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"metacompose.training.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
