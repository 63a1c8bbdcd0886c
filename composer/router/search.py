"""Routing by search: per task, the joint choice of candidates whose adapted model fits best.

Modular meta-learning (Alet et al. 2018) searches the structure per task by its loss. With a few
routed slots the joint choices can be enumerated (4 x 4 = 16): every task is adapted under every
one-hot routing, in one vmapped batch of ``K * T`` task copies, and the choice with the lowest
query loss after adaptation is the routing target. During meta-training these targets route the
modules (so that each candidate specialises on the tasks it explains best, as in hard EM) and
supervise the router's logits; at evaluation the router alone decides.
"""

from __future__ import annotations

import itertools

import torch

from metacompose.algorithms.inner_loop import Params, StepSizes, Vectorize, adapt, query_losses
from metacompose.router.pool import ModulePool, route_key

MAX_COMBINATIONS = 4096


def route_combinations(sizes: dict[str, int]) -> torch.Tensor:
    """Every joint choice: ``(K, S)`` candidate indices, ``K = prod(sizes)``, slots in order.

    Raises:
        ValueError: more than ``MAX_COMBINATIONS`` joint choices (search would be too costly).
    """
    k = 1
    for n in sizes.values():
        k *= n
    if k > MAX_COMBINATIONS:
        raise ValueError(
            f"routing search over {k} joint choices of slots {sizes} exceeds {MAX_COMBINATIONS}"
        )
    return torch.tensor(list(itertools.product(*[range(n) for n in sizes.values()])))


@torch.no_grad()
def search_routes(
    pool: ModulePool,
    fast: Params,
    frozen: Params,
    lrs: StepSizes,
    x: tuple[torch.Tensor, torch.Tensor],
    y: tuple[torch.Tensor, torch.Tensor],
    *,
    steps: int,
    loss: str,
    vectorize: Vectorize = True,
    chunk_size: int | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The best joint routing of every task (first-order adaptation, no gradient).

    Args:
        pool: the module pool; all its routed slots are searched.
        fast: per-task tensors ``(T, ...)`` (adapted weights, modulations); routing keys in it
            are replaced.
        frozen: the rest of the pool's weights.
        lrs: inner step size per key of ``fast``.
        x: ``(support_x, query_x)``, each ``(T, N, *in_shape)``.
        y: ``(support_y, query_y)``.
        steps: inner steps before the query loss is measured.
        loss: ``"mse"`` or ``"cross_entropy"``.
        vectorize: ``True`` (vmap over task copies), ``False`` (a loop) or ``"auto"`` (as
            :func:`metacompose.algorithms.inner_loop.use_vmap` decides for the inputs).
        chunk_size: task copies per vmapped call (``None``: all at once).

    Returns:
        ``(choice, losses)``: slot -> ``(T,)`` index of the chosen candidate, and the query loss
        ``(K, T)`` of each joint choice (rows as in :func:`route_combinations`).
    """
    slots = pool.routed_slots
    combos = route_combinations({s: pool.num_candidates[s] for s in slots})
    t = x[0].shape[0]
    picks = torch.arange(combos.shape[0]).expand(t, -1)
    losses = choice_losses(
        pool, fast, frozen, lrs, x, y, picks, steps=steps, loss=loss, vectorize=vectorize,
        chunk_size=chunk_size,
    )  # fmt: skip
    best = combos[losses.argmin(dim=0)]  # (T, S)
    return {s: best[:, i] for i, s in enumerate(slots)}, losses


@torch.no_grad()
def choice_losses(
    pool: ModulePool,
    fast: Params,
    frozen: Params,
    lrs: StepSizes,
    x: tuple[torch.Tensor, torch.Tensor],
    y: tuple[torch.Tensor, torch.Tensor],
    picks: torch.Tensor,
    *,
    steps: int,
    loss: str,
    vectorize: Vectorize = True,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """The loss after adaptation of chosen joint choices per task, in one vmapped batch.

    Args:
        picks: ``(T, k)`` rows of :func:`route_combinations` to score for each task.
        (the rest as :func:`search_routes`.)

    Returns:
        ``(k, T)``: ``[j, t]`` is task t's query loss under its joint choice ``picks[t, j]``
        after ``steps`` first-order inner steps on its support set.
    """
    slots = pool.routed_slots
    combos = route_combinations({s: pool.num_candidates[s] for s in slots})
    t, k = picks.shape
    task = torch.arange(t).repeat(k)  # row j * T + t holds task t
    rows = combos[picks.T.reshape(-1)]  # (k * T, S)
    expanded = {key: v.detach()[task] for key, v in fast.items() if not key.startswith("route.")}
    for i, s in enumerate(slots):
        onehot = torch.nn.functional.one_hot(rows[:, i], pool.num_candidates[s])
        expanded[route_key(s)] = onehot.to(x[0])
    step_sizes = {key: lrs.get(key, 0.0) for key in expanded}
    sx, qx = (v[task] for v in x)
    sy, qy = (v[task] for v in y)
    adapted = adapt(
        pool, expanded, frozen, step_sizes, sx, sy, steps=steps, loss=loss, first_order=True,
        vectorize=vectorize, chunk_size=chunk_size,
    )  # fmt: skip
    return query_losses(
        pool, adapted, frozen, qx, qy, loss=loss, vectorize=vectorize, chunk_size=chunk_size
    ).view(k, t)
