"""Evaluate a checkpoint: adapt to fresh meta-test tasks and report the query metric per step."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from composer.algorithms import MetaLearner
from composer.build import build_family, build_learner
from composer.config.schema import RunConfig
from composer.graph import GraphError
from composer.tasks.base import TaskFamily, derive_seed
from composer.training.checkpoint_io import CheckpointError, safe_load
from composer.training.run import CHECKPOINT_FORMAT


@dataclass
class EvalResult:
    """Query metric after 0..S inner steps on ``n_tasks`` meta-test tasks (mean and 95% interval)."""

    task_family: str
    metric: str
    shots: int
    n_tasks: int
    steps: list[int]
    mean: list[float]
    ci95: list[float]

    def to_json_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        lines = [f"{'step':>4}  {'query ' + self.metric:>14}  {'± 95% CI':>10}"]
        for s, m, c in zip(self.steps, self.mean, self.ci95):
            lines.append(f"{s:>4}  {m:>14.4f}  {c:>10.4f}")
        return "\n".join(lines)


def load_checkpoint(path: str | Path) -> tuple[MetaLearner, DictConfig, TaskFamily]:
    """Rebuild the meta-learner of a run from its checkpoint alone (loaded with weights_only=True).

    Raises:
        CheckpointError: unreadable, hostile, or not a metacompose checkpoint.
    """
    ckpt = safe_load(path)
    meta = ckpt.get("metacompose")
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a metacompose checkpoint (no 'metacompose' section)")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.create(meta["config"]))
        family = build_family(cfg.task)
        learner = build_learner(cfg, family)
        graph_cls = type(learner.graph)  # ModuleGraph, or a router's ModulePool
        saved = graph_cls.from_json_dict(meta["graph"]).to_json_dict()
    except (ValueError, GraphError, KeyError) as e:
        raise CheckpointError(f"{path}: cannot rebuild the model: {e}") from e
    if saved != learner.graph.to_json_dict():
        raise CheckpointError(f"{path}: stored graph does not match the graph its config builds")
    state = {k.removeprefix("learner."): v for k, v in ckpt.get("state_dict", {}).items()}
    try:
        learner.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: weights do not fit the model: {' '.join(str(e).split())[:300]}"
        ) from e
    learner.eval()
    return learner, cfg, family


def evaluate(
    learner: MetaLearner,
    family: TaskFamily,
    *,
    n_tasks: int = 600,
    steps: int = 10,
    shots: int = 10,
    query: int = 10,
    seed: int = 0,
    batch_size: int = 100,
) -> EvalResult:
    """Adapt to ``n_tasks`` meta-test tasks (seeded, disjoint from training) for 0..``steps`` steps."""
    g = torch.Generator().manual_seed(derive_seed(seed, "test", "eval"))
    curves = []
    done = 0
    while done < n_tasks:
        b = min(batch_size, n_tasks - done)
        batch = family.sample(b, shots=shots, query=query, generator=g, split="test")
        curves.append(learner.evaluate(batch, steps=steps))
        done += b
    curve = torch.cat(curves, dim=1).double()  # (S + 1, N)
    mean = curve.mean(dim=1)
    std = curve.std(dim=1, unbiased=True) if n_tasks > 1 else torch.zeros_like(mean)
    ci = 1.96 * std / math.sqrt(n_tasks)
    return EvalResult(
        task_family=family.name,
        metric=family.metric,
        shots=shots,
        n_tasks=n_tasks,
        steps=list(range(steps + 1)),
        mean=[float(v) for v in mean],
        ci95=[float(v) for v in ci],
    )
