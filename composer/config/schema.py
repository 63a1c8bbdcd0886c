"""Typed schemas of a run config. Every YAML in ``configs/`` is merged onto ``RunConfig``.

Each field carries a comment saying what it does; unknown keys and wrong types are rejected by
omegaconf before any work starts (see :mod:`composer.config.load`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TaskConfig:
    family: str = "sinusoid"  # task family name (see composer.tasks.FAMILIES)
    args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the family
    shots: int = 10  # K: support examples per task (per class for classification)
    query: int = 10  # query examples per task (per class for classification)


@dataclass
class ModelConfig:
    builder: str = "mlp"  # graph builder name (see composer.models.MODEL_BUILDERS)
    args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the builder


@dataclass
class AlgoConfig:
    name: str = "maml"  # maml | fomaml | metasgd | anil | reptile
    inner_lr: float = 0.01  # inner SGD step size (Meta-SGD: initial learned step size)
    inner_steps: int = 1  # inner steps during meta-training
    eval_inner_steps: int = 10  # inner steps at validation / evaluation
    adapt: list[str] | None = None  # node names adapted in the inner loop (None: all; ANIL: head)
    first_order: bool = False  # first-order approximation for any algorithm
    vectorize: bool = True  # vmap over tasks (False: per-task Python loop, for reference)
    chunk_size: int | None = None  # vmap at most this many tasks at once (memory bound)
    checkpoint_inner: bool = False  # activation checkpointing of inner steps (second order)


@dataclass
class DataConfig:
    meta_batch_size: int = 25  # tasks per meta-iteration (across all ranks)
    val_tasks: int = 200  # meta-validation tasks per validation run (fixed seed)


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3  # outer (meta) learning rate
    weight_decay: float = 0.0
    grad_clip: float | None = None  # clip the meta-gradient norm (None: off)


@dataclass
class TrainerConfig:
    max_steps: int = 70000  # meta-iterations
    accelerator: str = "cpu"  # cpu | gpu | auto (passed to lightning.Trainer)
    devices: Any = 1  # number of devices, or a list of device ids
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | ddp_spawn ...
    precision: str = "32-true"  # 32-true | bf16-mixed | 16-mixed | 64-true
    val_check_interval: int = 1000  # meta-iterations between meta-validation runs
    log_every_n_steps: int = 100
    checkpoint_every_n_steps: int = 1000  # how often last.ckpt is rewritten
    enable_progress_bar: bool = True
    deterministic: bool = False


@dataclass
class RunConfig:
    seed: int = 0  # global seed: model init and every task stream derive from it
    out_dir: str = "runs"  # run folders are created under it
    name: str | None = None  # run folder name (default: <config name>-<timestamp>)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
