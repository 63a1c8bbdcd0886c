"""A plain meta-training loop for anything with ``meta_step(batch) -> MetaStep`` (no Lightning).

Used by ``scripts/bench_real.py`` to train every method (MAML family, routed learner, ProtoNet)
under the same wall-clock budget; ``metacompose train`` remains the way to produce run folders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from metacompose.progress import progress
from metacompose.tasks.base import TaskBatch, TaskFamily, derive_seed
from metacompose.training.guard import BadTaskGuard, grads_finite, guarded_meta_step


@dataclass
class MetaTrainResult:
    """Iterations run, wall seconds, the mean query loss of each meta-batch's good tasks (NaN
    when none was good), and, as in ``metacompose train``, the tasks dropped for a non-finite
    query loss and the steps skipped for a non-finite meta-gradient or no good task."""

    iterations: int
    seconds: float
    losses: list[float]
    bad_tasks: int = 0
    skipped_steps: int = 0


def meta_train(
    learner: nn.Module,
    family: TaskFamily,
    *,
    iterations: int,
    meta_batch_size: int,
    shots: int,
    query: int,
    lr: float = 1e-3,
    seed: int = 0,
    grad_clip: float | None = None,
    max_seconds: float | None = None,
    device: torch.device | str = "cpu",
    desc: str = "meta-train",
) -> MetaTrainResult:
    """Adam on ``learner.meta_step(batch).objective`` over seeded meta-train batches.

    Batch ``i`` is drawn from a generator seeded by ``derive_seed(seed, "train", i)``, so two
    learners trained with the same seed see the same tasks. Stops after ``iterations`` or
    ``max_seconds``, whichever comes first. Guarded like ``metacompose train``
    (:mod:`metacompose.training.guard`): tasks whose query loss is not finite are dropped from the
    meta-objective, and a step with no good task or a non-finite meta-gradient is skipped, so
    that one diverging task cannot turn every weight into NaN. A progress bar labelled ``desc``
    counts the iterations on stderr (see :mod:`metacompose.progress`).
    """
    params = [p for p in learner.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    learner.train()
    losses, start = [], time.perf_counter()
    guard = BadTaskGuard(max_bad_tasks=None)
    with progress(desc=desc, total=iterations, unit="it") as bar:
        for i in range(iterations):
            g = torch.Generator().manual_seed(derive_seed(seed, "train", i))
            batch = family.sample(
                meta_batch_size, shots=shots, query=query, generator=g, split="train"
            )
            losses.append(
                _step(learner, opt, params, guard, batch.to(device), index=i, clip=grad_clip)
            )
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                break
    learner.eval()
    return MetaTrainResult(iterations=len(losses), seconds=time.perf_counter() - start,
                           losses=losses, bad_tasks=guard.bad_tasks,
                           skipped_steps=guard.skipped_steps)  # fmt: skip


def _step(
    learner: nn.Module,
    opt: torch.optim.Optimizer,
    params: list[nn.Parameter],
    guard: BadTaskGuard,
    batch: TaskBatch,
    *,
    index: int,
    clip: float | None,
) -> float:
    """One guarded Adam step on ``batch``; the mean query loss of its good tasks (NaN if none)."""
    step = guarded_meta_step(learner, batch, step=index)
    opt.zero_grad()
    if step.good:
        (step.objective * (step.tasks / step.good)).backward()  # mean over the good tasks
    finite = grads_finite(params)
    if not guard.record(
        step=index, good=step.good, tasks=step.tasks, finite_grad=finite, warn=False
    ):
        if clip is not None:
            nn.utils.clip_grad_norm_(params, clip)
        opt.step()
    return float(step.query_loss.detach().mean()) if step.good else float("nan")
