"""Catastrophic forgetting: adapt in sequence to tasks T1..Tn, then re-measure T1..Tn-1."""

from __future__ import annotations

import torch

from metacompose.algorithms.inner_loop import adapt, broadcast_tasks, query_losses
from metacompose.algorithms.learner import Learner, ParameterAdapter
from metacompose.tasks.base import TaskFamily, derive_seed


def supports_forgetting(learner: Learner) -> bool:
    """Only learners whose adapted state is a plain parameter dict (:class:`ParameterAdapter`)."""
    return isinstance(learner, ParameterAdapter)


@torch.no_grad()
def sequential_metrics(
    learner: Learner,
    family: TaskFamily,
    *,
    n_sequences: int = 100,
    length: int = 5,
    shots: int,
    query: int,
    steps: int,
    seed: int = 0,
    scope: list[str] | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Metric matrix of sequential adaptation, ``n_sequences`` sequences in parallel.

    Starting from the meta-learned initialisation, the parameters adapt ``steps`` inner steps on
    T1's support set, continue from there on T2's, and so on to Tn.

    Args:
        learner: a :class:`~metacompose.algorithms.ParameterAdapter` (its graph, step sizes,
            loss), e.g. a ``MetaLearner``; any other learner raises ``ValueError``.
        scope: node names whose parameters adapt (``None``: the learner's adaptation scope;
            ``["head"]``: the body stays frozen, as in ANIL).

    Returns:
        ``(n_sequences, length, length)`` float64: entry ``[s, i, j]`` is the query metric on task
        ``i`` after adapting through task ``j`` (``nan`` for ``j < i``).
    """
    if not supports_forgetting(learner):
        raise ValueError(
            f"{type(learner).__name__} has no plain parameter dict to adapt in sequence"
        )
    fast, frozen = learner.split_params()
    if scope is not None:
        keep = set(learner.graph.param_keys(scope))
        frozen = {**frozen, **{k: v for k, v in fast.items() if k not in keep}}
        fast = {k: v for k, v in fast.items() if k in keep}
        if not fast:
            raise ValueError(f"scope {scope} selects none of the adapted parameters")
    step_sizes = learner.lrs()  # one dict, or one per inner step (per_step_lr)
    lrs = (
        [{k: v for k, v in d.items() if k in fast} for d in step_sizes]
        if isinstance(step_sizes, list)
        else {k: v for k, v in step_sizes.items() if k in fast}
    )
    g = torch.Generator().manual_seed(derive_seed(seed, "test", "forgetting", shots, query))
    tasks = [
        family.sample(n_sequences, shots=shots, query=query, generator=g, split="test").to(device)
        for _ in range(length)
    ]
    fast = broadcast_tasks(fast, n_sequences)
    out = torch.full((n_sequences, length, length), float("nan"), dtype=torch.float64)
    for j, task in enumerate(tasks):
        fast = adapt(
            learner.graph,
            fast,
            frozen,
            lrs,
            task.support_x,
            task.support_y,
            steps=steps,
            loss=learner.loss,
            first_order=True,
        )
        for i in range(j + 1):
            m = query_losses(
                learner.graph, fast, frozen, tasks[i].query_x, tasks[i].query_y,
                loss=learner.loss, metric=True,
            )  # fmt: skip
            out[:, i, j] = m.double().cpu()
    return out
