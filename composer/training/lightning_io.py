"""Lightning's checkpoint I/O plugin on top of :mod:`metacompose.training.checkpoint_io` (kept
apart so that loading a checkpoint, e.g. for ``metacompose eval``, never imports Lightning), and the
periodic checkpoint callback."""

from __future__ import annotations

from typing import Any

from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from metacompose.training.checkpoint_io import atomic_save, safe_load


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O: atomic rename on save, ``weights_only=True`` on load."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        fs = get_filesystem(path)
        if fs.protocol not in ("file", ("file", "local")) and "file" not in fs.protocol:
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return safe_load(path, map_location=map_location or "cpu")


class PeriodicCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``state_key`` (the key of its state in a checkpoint, the same
    string) is built once: Lightning builds it for every hook of every batch (~5 a meta-step)."""

    @property
    def state_key(self) -> str:
        key = self.__dict__.get("_state_key")
        if key is None:
            key = self.__dict__["_state_key"] = super().state_key
        return key
