"""Fail before any work when the trainer section asks for hardware or a layout this run cannot use."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig, ListConfig

from metacompose.config import ConfigError

log = logging.getLogger(__name__)


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
    or all devices (-1) on CPU, fp16 mixed precision on CPU, multi-node runs without a shared run
    ``name`` or without a launcher that starts the nodes (:func:`multi_node_launcher`), and a
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
    if on_cpu and str(devices).strip() == "-1":  # Lightning's CPU accelerator: a TypeError
        raise ConfigError(
            "trainer.devices=-1: all devices means all GPUs; on CPU give a process count "
            "(e.g. trainer.devices=2 trainer.strategy=ddp) or auto"
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
    if t.num_nodes > 1 and multi_node_launcher() is None:
        raise ConfigError(
            f"trainer.num_nodes={t.num_nodes}: no multi-node launcher found (srun, torchrun, jsrun, "
            "mpirun, or MASTER_ADDR and NODE_RANK set on every node); it would wait for the other "
            "nodes forever (see configs/sinusoid_multinode.yaml)"
        )
    check_layout(cfg)


def multi_node_launcher() -> str | None:
    """The cluster environment Lightning would detect for a multi-node run (``None``: none).

    Lightning's own detection (lightning.fabric.plugins.environments), in its order: torchelastic
    (``torchrun``), SLURM (``srun``), LSF (``jsrun``) and MPI; else its default environment
    launched by hand, which needs the main node's ``MASTER_ADDR`` and this node's ``NODE_RANK`` (or
    ``GROUP_RANK``): without them every node takes itself for node 0 and waits. SLURM's check warns
    when ``srun`` is on the PATH but unused; that warning is Lightning's to give, not this check's.
    """
    import os
    import warnings

    from lightning.fabric.plugins.environments import (
        LSFEnvironment,
        MPIEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    for env in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if env.detect():
                return env.__name__
    if "MASTER_ADDR" in os.environ and ("NODE_RANK" in os.environ or "GROUP_RANK" in os.environ):
        return "LightningEnvironment"
    return None


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


def chunks_per_rank(cfg: DictConfig, ranks: int, task_mb: float | None = None) -> int:
    """Micro-batches (gradient-accumulation steps) per meta-batch on each rank.

    ``data.task_chunk_size`` when set; else, given ``task_mb`` (:func:`estimate_task_mb`), as few
    chunks as keep each chunk's activations within :func:`memory_budget_mb`; else one.
    """
    share = cfg.data.meta_batch_size // ranks
    chunk = cfg.data.task_chunk_size
    if chunk is None and task_mb is not None:
        check_budget(cfg.data.memory_budget_mb, task_mb)
        chunk = auto_task_chunk(share, task_mb, memory_budget_mb(cfg))
    return 1 if chunk is None else share // chunk


def check_budget(budget_mb: float | None, task_mb: float) -> None:
    """A ``data.memory_budget_mb`` set below one task's estimate cannot be honoured (a chunk holds
    at least one task): one warning line naming it and the estimate; the run goes on with one task
    per chunk, as close to the budget as it can get. Not refused: the estimate is rough (it counts
    neither ``checkpoint_inner`` nor the precision), and a run saved with such a budget must still
    resume."""
    if budget_mb is not None and budget_mb < task_mb:
        log.warning(
            "data.memory_budget_mb=%g: below one task's estimated %.3g MB of activations; each "
            "backward holds one task",
            budget_mb,
            task_mb,
        )


# Default activation budget per rank on CPU (data.memory_budget_mb). On CPU the conv path loops over
# tasks anyway, so small chunks cost nothing but a micro-batch each: 64 MB keeps one MAML conv4-64
# task per chunk (peak RSS like the per-task peers'), while an MLP's meta-batch stays whole.
CPU_MEMORY_BUDGET_MB = 64.0
GPU_MEMORY_FRACTION = 0.25  # default budget on GPU: this fraction of the device's total memory


def memory_budget_mb(cfg: DictConfig) -> float:
    """``data.memory_budget_mb``, or its default for the run's accelerator.

    The defaults are fixed per machine (not read from the free memory), so a resumed run cuts its
    meta-batches into the same chunks.
    """
    budget = cfg.data.memory_budget_mb
    if budget is not None:
        return float(budget)
    acc = str(cfg.trainer.accelerator)
    if acc in ("gpu", "cuda") or (acc == "auto" and _gpu_count() > 0):
        return GPU_MEMORY_FRACTION * torch.cuda.get_device_properties(0).total_memory / 2**20
    return CPU_MEMORY_BUDGET_MB


def auto_task_chunk(share: int, task_mb: float, budget_mb: float) -> int:
    """The largest divisor of ``share`` (tasks per rank) whose chunk fits ``budget_mb`` (at least 1).

    Args:
        share: tasks each rank draws per meta-batch.
        task_mb: estimated activation memory of one task's meta-gradient
            (:func:`estimate_task_mb`).
        budget_mb: activation memory a chunk may hold.
    """
    fits = max(1, int(budget_mb // max(task_mb, 1e-9)))
    return max(d for d in range(1, share + 1) if share % d == 0 and d <= fits)


def estimate_task_mb(
    graph: torch.nn.Module,
    example: torch.Tensor,
    *,
    support: int,
    query: int,
    steps: int,
    second_order: bool,
) -> float:
    """Activation memory (MB) the meta-gradient of one task keeps until its backward.

    Counts the bytes autograd saves for one plain forward of ``example`` (``(B, *in_shape)``,
    ``B >= 2`` so batch norm has statistics; parameters excluded) per example, then scales by the
    examples the meta-step keeps: the query set, plus for second order each inner step's support
    forward and its differentiable backward (about twice the forward's activations). Parameters
    and the example itself are not counted.

    Args:
        graph: the model (called as ``graph(example)``).
        example: a few inputs of the task family.
        support: support examples per task; query: query examples per task.
        steps: inner steps; second_order: whether the inner steps stay in the graph.
    """
    shared = {p.untyped_storage().data_ptr() for p in graph.parameters()}
    shared.add(example.untyped_storage().data_ptr())  # the batch itself is not an activation
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in shared:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        graph(example)
    per_example = sum(seen.values()) / example.shape[0]
    kept = query + (3 * steps * support if second_order else 0)
    return per_example * kept / 2**20
