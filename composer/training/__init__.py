"""Meta-training on Lightning: task streams, the LightningModule, safe checkpoints, ``train``."""

from metacompose.training.checkpoint_io import (
    AtomicCheckpointIO,
    CheckpointError,
    atomic_save,
    safe_load,
)
from metacompose.training.data import SHARDINGS, MetaDataModule, TaskStream, select_tasks
from metacompose.training.guard import (
    BadInputError,
    BadTaskGuard,
    BadTaskWarning,
    guarded_meta_step,
)
from metacompose.training.hardware import check_accelerator
from metacompose.training.interrupt import GracefulStop, TrainingInterrupted
from metacompose.training.module import MetaLearningModule
from metacompose.training.rng import capture_rng_state, restore_rng_state
from metacompose.training.run import TrainResult, resolve_resume, train
from metacompose.training.run_lock import RunFolderBusy, RunLock

__all__ = [
    "SHARDINGS",
    "AtomicCheckpointIO",
    "BadInputError",
    "BadTaskGuard",
    "BadTaskWarning",
    "CheckpointError",
    "GracefulStop",
    "MetaDataModule",
    "MetaLearningModule",
    "RunFolderBusy",
    "RunLock",
    "TaskStream",
    "TrainResult",
    "TrainingInterrupted",
    "atomic_save",
    "capture_rng_state",
    "check_accelerator",
    "guarded_meta_step",
    "resolve_resume",
    "restore_rng_state",
    "safe_load",
    "select_tasks",
    "train",
]
