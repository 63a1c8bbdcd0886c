"""Fail before any work when the trainer section asks for hardware or a layout this run cannot use."""

from __future__ import annotations

import torch
from omegaconf import DictConfig, ListConfig

from metacompose.config import ConfigError


def _gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def world_size(cfg: DictConfig) -> int | None:
    """Data-parallel ranks the trainer section asks for (``None`` when ``devices`` is ``auto``/-1)."""
    t = cfg.trainer
    devices = t.devices
    if isinstance(devices, (list, tuple, ListConfig)):
        return len(devices) * t.num_nodes
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices > 0:
        return devices * t.num_nodes
    return None


def check_accelerator(cfg: DictConfig) -> None:
    """One-line :class:`ConfigError` for impossible accelerator / devices / strategy / layout combos.

    Checked: GPUs asked for on a machine without (enough of) them, MPS without MPS, device-id lists
    on CPU, fp16 mixed precision on CPU, multi-node runs without a shared run ``name``, and a
    meta-batch that does not split evenly over ranks (and ``data.task_chunk_size`` chunks).
    """
    t = cfg.trainer
    acc = str(t.accelerator)
    gpus = _gpu_count()
    devices = t.devices
    is_list = isinstance(devices, (list, tuple, ListConfig))
    if acc in ("gpu", "cuda"):
        if gpus == 0:
            raise ConfigError(
                f"trainer.accelerator={acc}: no CUDA GPU is available on this machine "
                "(use trainer.accelerator=cpu)"
            )
        wanted = list(devices) if is_list else None
        if wanted is not None and any(int(d) >= gpus for d in wanted):
            raise ConfigError(
                f"trainer.devices={wanted}: this machine has {gpus} CUDA GPU(s) (ids 0..{gpus - 1})"
            )
        n = world_size(cfg)
        if wanted is None and n is not None and n // t.num_nodes > gpus:
            raise ConfigError(
                f"trainer.devices={devices}: this machine has only {gpus} CUDA GPU(s)"
            )
    elif acc == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator=mps: MPS is not available on this machine")
    on_cpu = acc == "cpu" or (acc == "auto" and gpus == 0)
    if on_cpu and is_list:
        raise ConfigError(
            f"trainer.devices={list(devices)}: device ids need a GPU; on CPU give a process count "
            "(e.g. trainer.devices=2 trainer.strategy=ddp)"
        )
    if on_cpu and str(t.precision) in ("16-mixed", "16", "16-true"):
        raise ConfigError(
            f"trainer.precision={t.precision}: fp16 is GPU-only; on CPU use bf16-mixed or 32-true"
        )
    if t.num_nodes > 1 and not cfg.name:
        raise ConfigError(
            f"trainer.num_nodes={t.num_nodes}: set name=<run name> so every node writes to the same "
            "run folder"
        )
    check_layout(cfg)


def check_layout(cfg: DictConfig) -> None:
    """The meta-batch must split evenly over ranks and, on each rank, into task chunks."""
    n = world_size(cfg) or 1
    mbs = cfg.data.meta_batch_size
    if mbs % n:
        raise ConfigError(
            f"data.meta_batch_size={mbs} must be divisible by the {n} data-parallel ranks "
            "(trainer.devices x trainer.num_nodes)"
        )
    chunk = cfg.data.task_chunk_size
    if chunk is not None and (chunk < 1 or (mbs // n) % chunk):
        raise ConfigError(
            f"data.task_chunk_size={chunk} must divide the {mbs // n} tasks each rank draws"
        )


def chunks_per_rank(cfg: DictConfig, ranks: int) -> int:
    """Micro-batches (gradient-accumulation steps) per meta-batch on each rank."""
    chunk = cfg.data.task_chunk_size
    return 1 if chunk is None else cfg.data.meta_batch_size // ranks // chunk
