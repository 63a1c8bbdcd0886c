"""``train(cfg)``: a plain function from a validated config to a run folder and its metrics."""

from __future__ import annotations

import contextlib
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
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from metacompose.algorithms import MetaLearner
from metacompose.build import build_family, build_learner, build_optimizer
from metacompose.config import ConfigError, to_yaml
from metacompose.config.schema import CADENCES, RestartConfig
from metacompose.progress import bars_off, progress_enabled
from metacompose.tasks.base import TaskBatch, derive_seed
from metacompose.tasks.provenance import data_source, provenance_of
from metacompose.training.data import MetaDataModule
from metacompose.training.guard import one_line_bad_task_warnings
from metacompose.training.hardware import (
    check_accelerator,
    chunks_per_rank,
    estimate_task_mb,
    world_size,
)
from metacompose.training.interrupt import GracefulStop, _StopRequested
from metacompose.training.interrupted import TrainingInterrupted
from metacompose.training.later_sections import check_later_sections
from metacompose.training.lightning_io import AtomicCheckpointIO, PeriodicCheckpoint
from metacompose.training.loggers import make_logger
from metacompose.training.module import MetaLearningModule
from metacompose.training.progress_bar import MetaProgressBar
from metacompose.training.restart_stage import check_restartable, run_stage
from metacompose.training.resume import (
    CHECKPOINT_FORMAT,
    ResumePoint,
    check_resumable,
    check_same_data,
    load_resume_point,
    resolve_resume,
)
from metacompose.training.run_folder import (
    RUN_DIR_ENV,
    open_run_folder,
    remove_if_untouched,
    run_dir_for,
)
from metacompose.training.steps_per_call import probe_step_seconds, resolve_steps_per_call

# Lightning warnings that say nothing about a meta-learning run (endless iterable streams, one
# process per CPU rank, resuming mid-"epoch" of an endless stream).
_QUIET = (
    ".*does not have many workers.*",
    ".*`IterableDataset` has `__len__`.*",
    ".*exists and is not empty.*",
    ".*isinstance\\(treespec, LeafSpec\\).*",
    ".*resuming from a checkpoint that ended before the epoch ended.*",
    ".*`training_step` returned `None`.*",
    # Manual optimization: a periodic checkpoint holds the weights after the step, as wanted.
    ".*ModelCheckpoint with manual optimization.*",
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "RUN_DIR_ENV",
    "TrainResult",
    "TrainingInterrupted",
    "check_accelerator",
    "resolve_resume",
    "train",
]


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
    start_step: int = 0  # meta-iterations done before this call (a resumed run's checkpoint)
    signal: int | None = None  # SIGINT/SIGTERM came too late to stop it: it finished and saved
    restarts: dict | None = None  # the block restarts' record (``restart:``; restart_stage)


def train(
    cfg: DictConfig,
    *,
    config_name: str = "run",
    resume: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Meta-train from a validated config; returns the run folder, checkpoint and final metrics.

    The run folder holds ``config.yaml`` (resolved), ``metrics.csv`` and ``checkpoints/last.ckpt``.
    It is created only once everything built from ``cfg`` (learner, optimizer, logger, Trainer)
    passed its checks, and it is locked while this trainer writes it: a second trainer on the same
    folder is refused. SIGINT/SIGTERM stop the run after the current meta-step with a resumable
    checkpoint (see :mod:`metacompose.training.interrupt`).

    Args:
        cfg: a config loaded with :func:`metacompose.config.load_config`.
        config_name: names the run folder when ``cfg.name`` is unset.
        resume: a run folder or checkpoint to continue exactly where it stopped (model, optimizer,
            loops, RNG states, task-stream positions, bad-task counters). ``cfg`` must be the
            run's own config (its ``trainer.max_steps`` may be raised).
        callbacks: extra Lightning callbacks.

    Raises:
        ConfigError: a bad config, a hardware request this machine cannot serve, or a ``resume``
            made from another config (all before the run folder is touched); or the device ran
            out of memory (the message names the setting to lower).
        CheckpointError: ``resume`` is unreadable, corrupt or hostile (nothing is run).
        RunFolderBusy: another live trainer holds the run folder.
        BadInputError: more NaN/Inf tasks than ``trainer.max_bad_tasks`` (``metrics.csv`` is kept).
        TrainingInterrupted: SIGINT/SIGTERM; its checkpoint resumes the run exactly.
    """
    check_accelerator(cfg)
    if cfg.trainer.cpu_threads is not None:
        # Meta-learning on CPU is many small ops: extra intra-op threads mostly spin. One thread
        # per process is fastest for the shipped configs (and avoids oversubscription under DDP).
        torch.set_num_threads(cfg.trainer.cpu_threads)
    # Everything that can fail on bad input is built and checked before the run folder is touched.
    point = None
    if resume is not None:
        point = load_resume_point(resume)
        check_resumable(point, cfg)
    module, data, chunks = build_run(cfg, resume=point)
    run_dir = point.run_dir if point is not None else run_dir_for(cfg, config_name)
    last = run_dir / "checkpoints" / "last.ckpt"
    stop = GracefulStop(checkpoint=last)
    trainer = make_trainer(cfg, run_dir=run_dir, chunks=chunks, steps_per_call=module.steps_per_call,
                           callbacks=[stop, *callbacks])  # fmt: skip

    L.seed_everything(derive_seed(cfg.seed, "trainer") % (2**31), verbose=False)
    # What a new run creates (the run folder, maybe out_dir too) goes again if it fails untouched.
    created = [p for p in (run_dir.parent, run_dir) if not p.exists()]
    created = created if point is None and rank_zero_only.rank == 0 else []
    with contextlib.ExitStack() as held:
        if rank_zero_only.rank == 0:
            held.enter_context(
                open_run_folder(run_dir, resume_step=point.step if point is not None else None)
            )
            if point is None:
                (run_dir / "config.yaml").write_text(to_yaml(cfg))
        trains = point is None or point.step < cfg.trainer.max_steps  # else: only restarts left
        start = time.perf_counter()
        try:
            if trains:
                fit(trainer, module, data, stop=stop, run_dir=run_dir, point=point, cfg=cfg)
        except BaseException:
            # Still holding the lock, so that no other trainer can have started in the folder.
            if run_dir in created and remove_if_untouched(run_dir) and run_dir.parent in created:
                with contextlib.suppress(OSError):
                    run_dir.parent.rmdir()  # only if empty
            raise
        if trains:
            trainer.save_checkpoint(last, weights_only=False)
        restarts, late = restart_stage(cfg, module, data, last=last, late=stop.signum)
        seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return TrainResult(run_dir=run_dir, checkpoint=last, metrics=metrics, seconds=seconds,
                       start_step=point.step if point is not None else 0, signal=stop.signum or late,
                       restarts=restarts)  # fmt: skip


def restart_stage(cfg: DictConfig, module: MetaLearningModule, data: MetaDataModule, *,
                  last: Path, late: int | None) -> tuple[dict | None, int | None]:  # fmt: skip
    """The block restarts ``cfg.restart`` asks for, on ``last``: their record (``None``: none) and
    a signal that came as the last phase ended (it finished and is saved)."""
    if not cfg.restart.order:
        return None, None
    with bars_off(not cfg.trainer.enable_progress_bar):
        return run_stage(last, learner=module.learner, family=data.family,
                         plan=RestartConfig(**cfg.restart), lr=cfg.optim.lr,
                         batch=cfg.data.meta_batch_size, shots=cfg.task.shots,
                         query=cfg.task.query, run_dir=last.parent.parent,
                         step=cfg.trainer.max_steps, late=late)  # fmt: skip


def build_run(
    cfg: DictConfig, *, resume: ResumePoint | None = None
) -> tuple[MetaLearningModule, MetaDataModule, int]:
    """The Lightning module, the task streams and the chunks per rank of a run (nothing on disk).

    ``resume``: the checkpoint a resumed run continues from (``trainer.steps_per_call`` must
    divide its step; a family read from data must be the one it was trained on).

    Raises:
        ConfigError: anything built from ``cfg`` refuses it (family, learner, optimizer).
    """
    family = build_family(cfg.task)
    check_same_data(resume, family, source=data_source(cfg.task.args))
    learner = build_learner(cfg, family)
    check_restartable(learner, RestartConfig(**cfg.restart), processes=world_size(cfg))
    check_later_sections(cfg)
    optimizer = functools.partial(build_optimizer, cfg.optim)
    try:
        optimizer(learner.parameters())
    except ValueError as e:  # torch's own checks: a negative lr, weight decay, ...
        raise ConfigError(f"optim: {e}") from e
    g = torch.Generator().manual_seed(0)
    example = family.sample(
        1, shots=cfg.task.shots, query=cfg.task.query, generator=g, split="train"
    )
    support, least = example.support_x.shape[1], cfg.algo.args.get("min_shots")  # ways x shots
    if isinstance(least, int) and least > support:
        msg = f"must be <= the support set's {support} examples (task.shots={cfg.task.shots})"
        raise ConfigError(f"algo.args.min_shots={least}: {msg}")
    chunks = chunks_per_rank(
        cfg, world_size(cfg) or 1, task_mb=task_memory_mb(cfg, learner, example)
    )
    t = cfg.trainer
    image = example.support_x.dim() >= 5
    step_seconds = None
    # The probe times a step where it runs: a single CPU process (on an accelerator the learner
    # moves later; several ranks must agree on one count, their clocks would not).
    on_cpu = str(t.accelerator).lower() == "cpu" and world_size(cfg) == 1
    if t.steps_per_call == "auto" and not image and chunks == 1 and on_cpu:
        batch = family.sample(cfg.data.meta_batch_size, shots=cfg.task.shots,
                              query=cfg.task.query, generator=g, split="train")  # fmt: skip
        step_seconds = probe_step_seconds(learner, batch)
    per_call = resolve_steps_per_call(
        t.steps_per_call,
        cadences={key: t[key] for key in CADENCES},
        chunks=chunks,
        image=image,
        resume_step=resume.step if resume is not None else 0,
        step_seconds=step_seconds,
    )
    module = MetaLearningModule(
        learner=learner,
        optimizer=optimizer,
        metric=family.metric,
        extra_checkpoint={
            "format": CHECKPOINT_FORMAT,
            "config": OmegaConf.to_container(cfg, resolve=True),
            "graph": learner.graph.to_json_dict(),
            **({"data": provenance_of(family)} if provenance_of(family) else {}),
        },
        max_bad_tasks=cfg.trainer.max_bad_tasks,
        grad_clip=cfg.optim.grad_clip,
        chunks=chunks,
        steps_per_call=per_call,
    )
    data = MetaDataModule(
        family=family,
        seed=cfg.seed,
        meta_batch_size=cfg.data.meta_batch_size,
        shots=cfg.task.shots,
        query=cfg.task.query,
        val_tasks=cfg.data.val_tasks,
        sharding=cfg.data.sharding,
        chunks=chunks,
        steps_per_call=per_call,
    )
    return module, data, chunks


def task_memory_mb(cfg: DictConfig, learner, task: TaskBatch) -> float | None:
    """Estimated activation memory of one task's meta-gradient (MAML family; else ``None``), from
    which ``data.memory_budget_mb`` chooses the task chunks; ``task``: one task of the family."""
    if not isinstance(learner, MetaLearner) or learner.algorithm == "reptile":
        return None
    example = torch.cat([task.support_x[0], task.query_x[0]])[:4]
    return estimate_task_mb(
        learner.graph,
        example,
        support=task.support_x.shape[1],
        query=task.query_x.shape[1],
        steps=learner.inner_steps,
        second_order=not learner.first_order,
    )


def fit(
    trainer: L.Trainer,
    module: MetaLearningModule,
    data: MetaDataModule,
    *,
    stop: GracefulStop,
    run_dir: Path,
    point: ResumePoint | None,
    cfg: DictConfig,
) -> None:
    """``trainer.fit`` with signal handling, quiet warnings and one-line failures.

    Raises:
        ConfigError: the device ran out of memory (the message names the setting to lower).
        TrainingInterrupted: SIGINT/SIGTERM stopped the run after a saved meta-step.
    """
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        with stop.handling_signals(), warnings.catch_warnings(), one_line_bad_task_warnings():
            for message in _QUIET:
                warnings.filterwarnings("ignore", message=message)
            trainer.fit(module, datamodule=data, ckpt_path=point.checkpoint if point else None)
    except torch.OutOfMemoryError as e:
        raise ConfigError(
            f"out of device memory at meta-iteration {trainer.global_step} "
            f"(data.meta_batch_size={cfg.data.meta_batch_size}): lower it, or set "
            "data.task_chunk_size to adapt fewer tasks at once"
        ) from e
    except _StopRequested:
        signum, step = stop.stopped
        raise TrainingInterrupted(
            signum=signum,
            run_dir=run_dir,
            checkpoint=stop.checkpoint,
            step=step,
            rank=rank_zero_only.rank,
        ) from None
    finally:
        if rank_zero_only.rank == 0:
            os.environ.pop(RUN_DIR_ENV, None)


def make_trainer(
    cfg: DictConfig,
    *,
    run_dir: Path,
    chunks: int,
    callbacks: Sequence[Callback],
    steps_per_call: int = 1,
) -> L.Trainer:
    """The Lightning ``Trainer`` of a run (it creates nothing on disk until ``fit``).

    Lightning counts training batches: ``chunks`` of them per meta-iteration, or one per
    ``steps_per_call`` meta-iterations; its cadences are converted accordingly.

    Raises:
        ConfigError: a precision, strategy, logger... that Lightning refuses.
    """
    t = cfg.trainer
    bar = t.enable_progress_bar and progress_enabled()
    try:
        return L.Trainer(
            max_steps=t.max_steps,
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=t.strategy,
            precision=t.precision,
            val_check_interval=min(t.val_check_interval, t.max_steps) * chunks // steps_per_call,
            check_val_every_n_epoch=None,
            log_every_n_steps=t.log_every_n_steps // steps_per_call,
            accumulate_grad_batches=chunks,
            enable_progress_bar=bar,
            deterministic=t.deterministic,
            # One micro-batch per meta-iteration: the module optimizes (and clips) itself.
            gradient_clip_val=cfg.optim.grad_clip if chunks > 1 else None,
            logger=make_logger(t.logger, run_dir),
            callbacks=[
                PeriodicCheckpoint(
                    dirpath=run_dir / "checkpoints",
                    save_last=True,
                    save_top_k=0,
                    every_n_train_steps=t.checkpoint_every_n_steps,
                ),
                *([MetaProgressBar(max_steps=t.max_steps)] if bar else []),
                *callbacks,
            ],
            plugins=[AtomicCheckpointIO()],
            inference_mode=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=str(run_dir),
        )
    except ConfigError:
        raise
    except (MisconfigurationException, ValueError, ImportError) as e:
        # ImportError: a precision or strategy whose package is missing (transformer-engine, ...)
        raise ConfigError(f"trainer: {' '.join(str(e).split())}") from e
