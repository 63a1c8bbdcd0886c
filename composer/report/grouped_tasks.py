"""Which group each seeded evaluation task was drawn from.

``metric_curves`` (report, bench) and ``evaluate_tasks`` (``metacompose eval``) return per-task
metrics only. Their task streams are seeded, so drawing them again gives the same tasks and, from
``TaskBatch.info["group"]``, the group of each one (tests/composer/report/test_grouped_tasks.py
checks that the two agree task for task).
"""

from __future__ import annotations

import torch

from metacompose.report.curves import SAMPLE_CHUNK
from metacompose.tasks.base import HasGroups, TaskFamily, derive_seed


def has_groups(family: TaskFamily) -> bool:
    """Whether ``family`` tells the group of each task (``info["group"]``): grouped families."""
    return isinstance(family, HasGroups)


def stream_groups(
    family: TaskFamily, *, generator_seed: int, split: str, n_tasks: int, shots: int,
    query: int, chunk: int,
) -> torch.Tensor:  # fmt: skip
    """Groups ``(n_tasks,)`` of the tasks one generator seeded ``generator_seed`` draws,
    ``chunk`` tasks per ``family.sample`` call."""
    if not has_groups(family):
        raise ValueError(f"{family.name}: its tasks have no groups (not a grouped family)")
    g = torch.Generator().manual_seed(generator_seed)
    out, done = [], 0
    while done < n_tasks:
        b = min(chunk, n_tasks - done)
        batch = family.sample(b, shots=shots, query=query, generator=g, split=split)
        out.append(batch.info["group"])
        done += b
    return torch.cat(out).long()


def curve_task_groups(
    family: TaskFamily, *, split: str, n_tasks: int, shots: int, query: int, seed: int = 0
) -> torch.Tensor:
    """Groups of the tasks of :func:`metacompose.report.metric_curves` with the same arguments."""
    return stream_groups(family, generator_seed=derive_seed(seed, split, "report", shots, query),
                         split=split, n_tasks=n_tasks, shots=shots, query=query,
                         chunk=SAMPLE_CHUNK)  # fmt: skip


def eval_task_groups(
    family: TaskFamily, *, n_tasks: int, shots: int, query: int, seed: int = 0,
    batch_size: int = 100,
) -> torch.Tensor:  # fmt: skip
    """Groups of the tasks of :func:`metacompose.evaluate.evaluate_tasks` (same arguments)."""
    return stream_groups(family, generator_seed=derive_seed(seed, "test", "eval"), split="test",
                         n_tasks=n_tasks, shots=shots, query=query, chunk=batch_size)  # fmt: skip
