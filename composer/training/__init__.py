"""Meta-training on Lightning: task streams, the LightningModule, safe checkpoints, ``train``."""

from composer.training.checkpoint_io import (
    AtomicCheckpointIO,
    CheckpointError,
    atomic_save,
    safe_load,
)
from composer.training.data import MetaDataModule, TaskStream
from composer.training.module import MetaLearningModule
from composer.training.run import TrainResult, train

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointError",
    "MetaDataModule",
    "MetaLearningModule",
    "TaskStream",
    "TrainResult",
    "atomic_save",
    "safe_load",
    "train",
]
