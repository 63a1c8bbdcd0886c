"""Per-task metric curves of any learner with ``evaluate(batch, steps=) -> (S + 1, T)``."""

from __future__ import annotations

import torch

from metacompose.tasks.base import TaskBatch, TaskFamily, derive_seed

SAMPLE_CHUNK = 50  # tasks per family.sample call: part of the definition of the seeded task stream
MAX_INPUT_VALUES = 2**20  # input values (support + query) adapted at once by default


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
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Query metric of ``n_tasks`` seeded tasks of ``split`` after 0..``steps`` adaptation steps.

    The tasks depend only on ``(seed, split, shots, query)`` (drawn ``SAMPLE_CHUNK`` at a time), so
    every learner evaluated with the same arguments sees the same tasks (a paired comparison),
    whatever ``batch_size``.

    Args:
        batch_size: tasks adapted at once (default: :func:`default_batch_size`: all of them for
            small regression tasks; one ``vmap`` over 200 sinusoid tasks is ~4x faster than four).

    Returns:
        ``(steps + 1, n_tasks)`` float64 on the CPU.
    """
    tasks = seeded_tasks(family, split=split, n_tasks=n_tasks, shots=shots, query=query, seed=seed)
    size = default_batch_size(tasks) if batch_size is None else batch_size
    out = [
        learner.evaluate(tasks.slice(i, i + size).to(device), steps=steps).double().cpu()
        for i in range(0, n_tasks, size)
    ]
    return torch.cat(out, dim=1)


def seeded_tasks(
    family: TaskFamily, *, split: str, n_tasks: int, shots: int, query: int, seed: int
) -> TaskBatch:
    """The ``n_tasks`` tasks of ``split`` that :func:`metric_curves` scores with these arguments."""
    g = torch.Generator().manual_seed(derive_seed(seed, split, "report", shots, query))
    chunks, done = [], 0
    while done < n_tasks:
        b = min(SAMPLE_CHUNK, n_tasks - done)
        chunks.append(family.sample(b, shots=shots, query=query, generator=g, split=split))
        done += b
    return TaskBatch.cat(chunks)


def default_batch_size(tasks: TaskBatch) -> int:
    """As many of ``tasks`` as hold ``MAX_INPUT_VALUES`` support + query input values (at least 1)."""
    per_task = (tasks.support_x.numel() + tasks.query_x.numel()) // tasks.num_tasks
    return max(1, min(tasks.num_tasks, MAX_INPUT_VALUES // max(per_task, 1)))
