"""Per-task metric curves of any learner with ``evaluate(batch, steps=) -> (S + 1, T)``."""

from __future__ import annotations

import torch

from composer.tasks.base import TaskFamily, derive_seed


def metric_curves(
    learner,
    family: TaskFamily,
    *,
    split: str = "test",
    n_tasks: int = 200,
    shots: int,
    query: int,
    steps: int,
    seed: int = 0,
    batch_size: int = 50,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Query metric of ``n_tasks`` seeded tasks of ``split`` after 0..``steps`` adaptation steps.

    The tasks depend only on ``(seed, split, shots, query)``, so every learner evaluated with the
    same arguments sees the same tasks (a paired comparison).

    Returns:
        ``(steps + 1, n_tasks)`` float64 on the CPU.
    """
    g = torch.Generator().manual_seed(derive_seed(seed, split, "report", shots, query))
    out, done = [], 0
    while done < n_tasks:
        b = min(batch_size, n_tasks - done)
        batch = family.sample(b, shots=shots, query=query, generator=g, split=split)
        out.append(learner.evaluate(batch.to(device), steps=steps).double().cpu())
        done += b
    return torch.cat(out, dim=1)
