"""``train(cfg)``: a plain function from a validated config to a run folder and its metrics."""

from __future__ import annotations

import functools
import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from composer.build import build_family, build_learner, build_optimizer
from composer.config import ConfigError, to_yaml
from composer.tasks.base import derive_seed
from composer.training.checkpoint_io import AtomicCheckpointIO, CheckpointError, safe_load
from composer.training.data import MetaDataModule
from composer.training.hardware import check_accelerator, chunks_per_rank, world_size
from composer.training.loggers import make_logger, trim_metrics
from composer.training.module import MetaLearningModule

CHECKPOINT_FORMAT = "metacompose.checkpoint/1"
# Rank 0 publishes its run folder here; processes that Lightning launches inherit it.
RUN_DIR_ENV = "METACOMPOSE_RUN_DIR"

# Lightning warnings that say nothing about a meta-learning run (endless iterable streams, one
# process per CPU rank, resuming mid-"epoch" of an endless stream).
_QUIET = (
    ".*does not have many workers.*",
    ".*`IterableDataset` has `__len__`.*",
    ".*exists and is not empty.*",
    ".*isinstance\\(treespec, LeafSpec\\).*",
    ".*resuming from a checkpoint that ended before the epoch ended.*",
    ".*`training_step` returned `None`.*",
)

__all__ = ["CHECKPOINT_FORMAT", "TrainResult", "check_accelerator", "resolve_resume", "train"]


class _DropAdverts(logging.Filter):
    """Drop Lightning's start-up advert for its cloud logger; keep every other message."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdverts())


@dataclass
class TrainResult:
    """Where a run went and how it ended."""

    run_dir: Path
    checkpoint: Path
    metrics: dict[str, float]
    seconds: float


def make_run_dir(cfg: DictConfig, config_name: str) -> Path:
    """The run folder (created on rank 0 only); launched ranks reuse rank 0's."""
    if rank_zero_only.rank != 0 and os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    name = cfg.name or f"{config_name}-{cfg.algo.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.out_dir) / name
    if rank_zero_only.rank == 0:
        if (run_dir / "checkpoints" / "last.ckpt").exists():
            raise ConfigError(f"name={name}: run folder {run_dir} already holds a checkpoint")
        run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def resolve_resume(resume: str | Path) -> tuple[Path, Path, int]:
    """``(checkpoint, run folder, global step)`` of a run folder or checkpoint to resume.

    The checkpoint is read with ``weights_only=True`` first, so a hostile file is refused before
    anything is built.

    Raises:
        CheckpointError: missing, corrupt, hostile or not a metacompose training checkpoint.
    """
    path = Path(resume)
    ckpt = path / "checkpoints" / "last.ckpt" if path.is_dir() else path
    state = safe_load(ckpt)
    meta = state.get("metacompose")
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{ckpt}: not a metacompose checkpoint (no 'metacompose' section)")
    if "loops" not in state or "optimizer_states" not in state:
        raise CheckpointError(f"{ckpt}: holds weights only; training cannot resume from it")
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return ckpt, run_dir, int(state.get("global_step", 0))


def train(
    cfg: DictConfig,
    *,
    config_name: str = "run",
    resume: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Meta-train from a validated config; returns the run folder, checkpoint and final metrics.

    The run folder holds ``config.yaml`` (resolved), ``metrics.csv`` and ``checkpoints/last.ckpt``.

    Args:
        cfg: a config loaded with :func:`composer.config.load_config`.
        config_name: names the run folder when ``cfg.name`` is unset.
        resume: a run folder or checkpoint to continue exactly where it stopped (model, optimizer,
            loops, RNG states, task-stream positions, bad-task counters). ``cfg`` should be the
            run's own config (its ``trainer.max_steps`` may be raised).
        callbacks: extra Lightning callbacks.

    Raises:
        ConfigError: a bad config or a hardware request this machine cannot serve (before training).
        CheckpointError: ``resume`` is unreadable, corrupt or hostile (nothing is run).
        BadInputError: more NaN/Inf tasks than ``trainer.max_bad_tasks``.
    """
    check_accelerator(cfg)
    if cfg.trainer.cpu_threads is not None:
        # Meta-learning on CPU is many small ops: extra intra-op threads mostly spin. One thread
        # per process is fastest for the shipped configs (and avoids oversubscription under DDP).
        torch.set_num_threads(cfg.trainer.cpu_threads)
    ckpt_path = None
    if resume is not None:
        ckpt_path, run_dir, step = resolve_resume(resume)
        if rank_zero_only.rank == 0:
            trim_metrics(run_dir / "metrics.csv", before_step=step)
    family = build_family(cfg.task)
    learner = build_learner(cfg, family)
    if resume is None:
        run_dir = make_run_dir(cfg, config_name)
        if rank_zero_only.rank == 0:
            (run_dir / "config.yaml").write_text(to_yaml(cfg))
    t = cfg.trainer
    module = MetaLearningModule(
        learner=learner,
        optimizer=functools.partial(build_optimizer, cfg.optim),
        metric=family.metric,
        extra_checkpoint={
            "format": CHECKPOINT_FORMAT,
            "config": OmegaConf.to_container(cfg, resolve=True),
            "graph": learner.graph.to_json_dict(),
        },
        max_bad_tasks=t.max_bad_tasks,
    )
    ranks = world_size(cfg) or 1
    chunks = chunks_per_rank(cfg, ranks)
    data = MetaDataModule(
        family=family,
        seed=cfg.seed,
        meta_batch_size=cfg.data.meta_batch_size,
        shots=cfg.task.shots,
        query=cfg.task.query,
        val_tasks=cfg.data.val_tasks,
        sharding=cfg.data.sharding,
        chunks=chunks,
    )
    ckpt_dir = run_dir / "checkpoints"
    try:
        trainer = L.Trainer(
            max_steps=t.max_steps,
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=t.strategy,
            precision=t.precision,
            val_check_interval=min(t.val_check_interval, t.max_steps) * chunks,
            check_val_every_n_epoch=None,
            log_every_n_steps=t.log_every_n_steps,
            accumulate_grad_batches=chunks,
            enable_progress_bar=t.enable_progress_bar,
            deterministic=t.deterministic,
            gradient_clip_val=cfg.optim.grad_clip,
            logger=make_logger(t.logger, run_dir),
            callbacks=[
                ModelCheckpoint(
                    dirpath=ckpt_dir,
                    save_last=True,
                    save_top_k=0,
                    every_n_train_steps=t.checkpoint_every_n_steps,
                ),
                *callbacks,
            ],
            plugins=[AtomicCheckpointIO()],
            inference_mode=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=str(run_dir),
        )
    except (MisconfigurationException, ValueError) as e:
        raise ConfigError(f"trainer: {' '.join(str(e).split())}") from e
    L.seed_everything(derive_seed(cfg.seed, "trainer") % (2**31), verbose=False)
    start = time.perf_counter()
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        with warnings.catch_warnings():
            for message in _QUIET:
                warnings.filterwarnings("ignore", message=message)
            trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    finally:
        if rank_zero_only.rank == 0:
            os.environ.pop(RUN_DIR_ENV, None)
    seconds = time.perf_counter() - start
    last = ckpt_dir / "last.ckpt"
    trainer.save_checkpoint(last, weights_only=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return TrainResult(run_dir=run_dir, checkpoint=last, metrics=metrics, seconds=seconds)
