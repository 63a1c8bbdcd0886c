"""A plain meta-training loop for anything with ``meta_step(batch) -> MetaStep`` (no Lightning).

Used by ``scripts/bench_real.py`` to train every method (MAML family, routed learner, ProtoNet)
under the same wall-clock budget; ``metacompose train`` remains the way to produce run folders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from composer.tasks.base import TaskFamily, derive_seed


@dataclass
class MetaTrainResult:
    """Iterations run, wall seconds, and the mean query loss of each meta-batch."""

    iterations: int
    seconds: float
    losses: list[float]


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
) -> MetaTrainResult:
    """Adam on ``learner.meta_step(batch).objective`` over seeded meta-train batches.

    Batch ``i`` is drawn from a generator seeded by ``derive_seed(seed, "train", i)``, so two
    learners trained with the same seed see the same tasks. Stops after ``iterations`` or
    ``max_seconds``, whichever comes first.
    """
    opt = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=lr)
    learner.train()
    losses, start, done = [], time.perf_counter(), 0
    for i in range(iterations):
        g = torch.Generator().manual_seed(derive_seed(seed, "train", i))
        batch = family.sample(meta_batch_size, shots=shots, query=query, generator=g, split="train")
        step = learner.meta_step(batch.to(device))
        opt.zero_grad()
        step.objective.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(learner.parameters(), grad_clip)
        opt.step()
        losses.append(float(step.query_loss.detach().mean()))
        done += 1
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    learner.eval()
    return MetaTrainResult(iterations=done, seconds=time.perf_counter() - start, losses=losses)
