"""``train(cfg)``: a plain function from a validated config to a run folder and its metrics."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from composer.build import build_family, build_learner, build_optimizer
from composer.config import ConfigError, to_yaml
from composer.tasks.base import derive_seed
from composer.training.checkpoint_io import AtomicCheckpointIO
from composer.training.data import MetaDataModule
from composer.training.module import MetaLearningModule

CHECKPOINT_FORMAT = "metacompose.checkpoint/1"


@dataclass
class TrainResult:
    """Where a run went and how it ended."""

    run_dir: Path
    checkpoint: Path
    metrics: dict[str, float]
    seconds: float


def check_accelerator(cfg: DictConfig) -> None:
    """Fail before any work if the config asks for hardware this machine lacks."""
    acc = str(cfg.trainer.accelerator)
    if acc in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={acc}: no CUDA GPU is available on this machine "
            "(use trainer.accelerator=cpu)"
        )
    if acc == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator=mps: MPS is not available on this machine")


def make_run_dir(cfg: DictConfig, config_name: str) -> Path:
    name = cfg.name or f"{config_name}-{cfg.algo.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.out_dir) / name
    if (run_dir / "checkpoints" / "last.ckpt").exists():
        raise ConfigError(f"name={name}: run folder {run_dir} already holds a checkpoint")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def train(cfg: DictConfig, *, config_name: str = "run") -> TrainResult:
    """Meta-train from a validated config; returns the run folder, checkpoint and final metrics.

    The run folder holds ``config.yaml`` (resolved), ``metrics.csv`` and ``checkpoints/last.ckpt``.
    """
    check_accelerator(cfg)
    family = build_family(cfg.task)
    learner = build_learner(cfg, family)
    run_dir = make_run_dir(cfg, config_name)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))

    module = MetaLearningModule(
        learner=learner,
        optimizer=lambda params: build_optimizer(cfg.optim, params),
        metric=family.metric,
        extra_checkpoint={
            "format": CHECKPOINT_FORMAT,
            "config": OmegaConf.to_container(cfg, resolve=True),
            "graph": learner.graph.to_json_dict(),
        },
    )
    data = MetaDataModule(
        family=family,
        seed=cfg.seed,
        meta_batch_size=cfg.data.meta_batch_size,
        shots=cfg.task.shots,
        query=cfg.task.query,
        val_tasks=cfg.data.val_tasks,
    )
    t = cfg.trainer
    ckpt_dir = run_dir / "checkpoints"
    trainer = L.Trainer(
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        val_check_interval=min(t.val_check_interval, t.max_steps),
        check_val_every_n_epoch=None,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.enable_progress_bar,
        deterministic=t.deterministic,
        gradient_clip_val=cfg.optim.grad_clip,
        logger=CSVLogger(save_dir=str(run_dir), name="", version=""),
        callbacks=[
            ModelCheckpoint(
                dirpath=ckpt_dir,
                save_last=True,
                save_top_k=0,
                every_n_train_steps=t.checkpoint_every_n_steps,
            )
        ],
        plugins=[AtomicCheckpointIO()],
        inference_mode=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(run_dir),
    )
    L.seed_everything(derive_seed(cfg.seed, "trainer") % (2**31), verbose=False)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__`.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
        trainer.fit(module, datamodule=data)
    seconds = time.perf_counter() - start
    last = ckpt_dir / "last.ckpt"
    trainer.save_checkpoint(last, weights_only=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return TrainResult(run_dir=run_dir, checkpoint=last, metrics=metrics, seconds=seconds)
