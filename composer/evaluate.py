"""Evaluate a checkpoint: adapt to fresh meta-test tasks and report the query metric per step."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from metacompose.algorithms import Learner
from metacompose.build import build_family, build_learner
from metacompose.config.schema import RunConfig
from metacompose.graph import GraphError
from metacompose.progress import progress
from metacompose.stats import ci95_over_tasks
from metacompose.tasks.base import TaskFamily, derive_seed
from metacompose.training.checkpoint_io import CheckpointError, safe_load
from metacompose.training.run import CHECKPOINT_FORMAT


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


def load_checkpoint(path: str | Path) -> tuple[Learner, DictConfig, TaskFamily]:
    """Rebuild the meta-learner of a run from its checkpoint alone (loaded with weights_only=True).

    Raises:
        CheckpointError: unreadable, hostile, not a metacompose checkpoint, or weights holding
            NaN/Inf (the message names the first such tensor).
    """
    ckpt = safe_load(path)
    meta = ckpt.get("metacompose")
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a metacompose checkpoint (no 'metacompose' section)")
    state = {k.removeprefix("learner."): v for k, v in ckpt.get("state_dict", {}).items()}
    for name, tensor in state.items():
        finite = not isinstance(tensor, torch.Tensor) or torch.isfinite(tensor).all()
        if not finite:
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{path}: weight {name!r} holds {bad} non-finite value(s) (NaN/Inf) of "
                f"{tensor.numel()}: the run diverged; use an earlier checkpoint"
            )
    try:
        config = drop_retired_keys(meta["config"], path)
        cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.create(config))
        family = build_family(cfg.task)
        learner = build_learner(cfg, family)
        graph_cls = type(learner.graph)  # ModuleGraph, or a router's ModulePool
        saved = graph_cls.from_json_dict(meta["graph"]).to_json_dict()
    except (ValueError, GraphError, KeyError) as e:
        raise CheckpointError(f"{path}: cannot rebuild the model: {e}") from e
    if saved != learner.graph.to_json_dict():
        raise CheckpointError(f"{path}: stored graph does not match the graph its config builds")
    try:
        learner.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: weights do not fit the model: {' '.join(str(e).split())[:300]}"
        ) from e
    learner.eval()
    return learner, cfg, family


# Router options removed from the schema, with the value every checkpoint that used them wrote
# (none of them changed what was built at that value).
RETIRED_ROUTER_KEYS = {
    "descriptor_classes": 0,
    "amortized": True,
    "descriptor_local": False,
    "modulation_lr": 0.1,
    "anchor_rounds": 4,
    "adapt": "modules",
}


def drop_retired_keys(config: dict, path: str | Path) -> dict:
    """An older checkpoint's config without the retired router keys at their old defaults.

    Raises:
        CheckpointError: a retired key set to another value (the model it describes can no
            longer be built).
    """
    router = dict(config.get("router") or {})
    for key, default in RETIRED_ROUTER_KEYS.items():
        if key in router and router.pop(key) != default:
            raise CheckpointError(
                f"{path}: router.{key}={config['router'][key]!r} is no longer supported "
                f"(removed option); this checkpoint cannot be rebuilt"
            )
    return {**config, "router": router} if "router" in config else config


def evaluate(
    learner: Learner,
    family: TaskFamily,
    *,
    n_tasks: int = 600,
    steps: int = 10,
    shots: int = 10,
    query: int = 10,
    seed: int = 0,
    batch_size: int = 100,
) -> EvalResult:
    """Adapt to ``n_tasks`` meta-test tasks (seeded, disjoint from training) for 0..``steps`` steps.

    A progress bar over the tasks is drawn on stderr (see :mod:`metacompose.progress`).
    """
    curve = evaluate_tasks(
        learner,
        family,
        n_tasks=n_tasks,
        steps=steps,
        shots=shots,
        query=query,
        seed=seed,
        batch_size=batch_size,
    ).double()  # (S + 1, N)
    mean = curve.mean(dim=1)
    ci = ci95_over_tasks(curve, dim=1) if n_tasks > 1 else torch.zeros_like(mean)
    return EvalResult(
        task_family=family.name,
        metric=family.metric,
        shots=shots,
        n_tasks=n_tasks,
        steps=list(range(steps + 1)),
        mean=[float(v) for v in mean],
        ci95=[float(v) for v in ci],
    )


def evaluate_tasks(
    learner: Learner,
    family: TaskFamily,
    *,
    n_tasks: int,
    steps: int,
    shots: int,
    query: int,
    seed: int = 0,
    batch_size: int = 100,
    chunk: int | None = None,
) -> torch.Tensor:
    """Per-task query metric after 0..``steps`` inner steps: ``(steps + 1, n_tasks)``.

    Tasks are drawn ``batch_size`` at a time from one seeded generator (so ``batch_size`` is part
    of the task stream), and each drawn batch is adapted ``chunk`` tasks at a time (default: all of
    it), with a progress bar over the tasks.
    """
    g = torch.Generator().manual_seed(derive_seed(seed, "test", "eval"))
    curves = []
    with progress(desc=f"eval {family.name}", total=n_tasks, unit="task") as bar:
        for start in range(0, n_tasks, batch_size):
            b = min(batch_size, n_tasks - start)
            batch = family.sample(b, shots=shots, query=query, generator=g, split="test")
            step = b if chunk is None else chunk
            for i in range(0, b, step):
                part = batch if step >= b else batch.slice(i, min(i + step, b))
                curves.append(learner.evaluate(part, steps=steps))
                bar.update(part.num_tasks)
    return torch.cat(curves, dim=1)
