"""A convex combination of trained regression learners' predictions, its weights chosen on
meta-val tasks (model averaging; stacking in Wolpert's sense, with the weights on a grid).

``w * a + (1 - w) * b`` of two members' query predictions (:func:`run_ensemble`), or
``sum_j w_j p_j`` of several (:func:`run_stack`, weights on the simplex), each member adapted as it
is scored alone (its adaptation steps chosen on meta-val). The weights are the point of a grid with
the lowest mean meta-val MSE; every corner is on the grid, so the blend can fall back to any one
member, and the two-member grid is an edge of the simplex grid. ``MSE(w)`` is a quadratic in ``w``
whose minimum is at or below every corner when the members disagree, which is what averaging buys.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from metacompose.baselines.compare import EvalPlan, MethodResult
from metacompose.report.curves import default_batch_size, seeded_tasks
from metacompose.report.stats import over_tasks
from metacompose.tasks.base import TaskBatch, TaskFamily

WEIGHT_GRID = tuple(i / 10 for i in range(11))
GRID_STEPS = 10  # the simplex grid's weights are multiples of 1 / GRID_STEPS


@runtime_checkable
class PredictsQueries(Protocol):
    """A learner that returns its adapted predictions on each task's query inputs."""

    def predict_queries(self, batch: TaskBatch, *, steps: int) -> torch.Tensor:
        """``(T, Q, out)`` outputs after ``steps`` adaptation steps on the support set."""
        ...


def member_predictions(
    learner: PredictsQueries, family: TaskFamily, *, split: str, n_tasks: int, shots: int,
    query: int, steps: int, seed: int, device: str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``(predictions (N, Q, out), targets (N, Q, out))`` on the tasks that
    :func:`metacompose.report.metric_curves` scores with these arguments, float64 on the CPU."""
    tasks = seeded_tasks(family, split=split, n_tasks=n_tasks, shots=shots, query=query, seed=seed)
    size = default_batch_size(tasks)
    preds = [
        learner.predict_queries(tasks.slice(i, i + size).to(device), steps=steps).double().cpu()
        for i in range(0, n_tasks, size)
    ]
    return torch.cat(preds), tasks.query_y.double()


def simplex_grid(k: int, steps: int = GRID_STEPS) -> tuple[tuple[float, ...], ...]:
    """Every ``k``-tuple of non-negative multiples of ``1 / steps`` summing to one, the first
    member's weight ascending (``k = 2``: ``(0, 1), (0.1, 0.9), ..., (1, 0)``, the order of
    :data:`WEIGHT_GRID`)."""
    if k < 1 or steps < 1:
        raise ValueError(f"simplex_grid needs k >= 1 and steps >= 1, not k={k}, steps={steps}")
    points = []
    for head in itertools.product(range(steps + 1), repeat=k - 1):
        if sum(head) <= steps:
            points.append((*(i / steps for i in head), (steps - sum(head)) / steps))
    return tuple(points)


def stack_mse(preds: Sequence[torch.Tensor], y: torch.Tensor, weights: Sequence[float]
              ) -> torch.Tensor:  # fmt: skip
    """Per-task MSE ``(N,)`` of ``sum_j weights[j] * preds[j]`` against ``y`` (all ``(N, Q, D)``);
    a member with weight 0 is not read (a diverged one does not spoil the others)."""
    if len(preds) != len(weights) or not preds:
        raise ValueError(f"stack_mse: {len(preds)} members, {len(weights)} weights")
    terms = [p if w == 1 else w * p for p, w in zip(preds, weights, strict=True) if w != 0]
    blend = sum(terms[1:], terms[0]) if terms else torch.zeros_like(y)
    return (blend - y).pow(2).flatten(1).mean(1)


def choose_weights(preds: Sequence[torch.Tensor], y: torch.Tensor,
                   grid: Sequence[tuple[float, ...]] | None = None) -> tuple[tuple[float, ...], float]:  # fmt: skip
    """``(weights, mean MSE)`` of the grid point (default: :func:`simplex_grid`) with the lowest
    mean MSE (the first, on a tie); weights whose MSE is not finite are never chosen (a diverged
    member gets weight 0 if any other member is finite)."""
    best = None
    for w in simplex_grid(len(preds)) if grid is None else grid:
        m = float(stack_mse(preds, y, w).mean())
        if m == m and m != float("inf") and (best is None or m < best[1]):
            best = (tuple(w), m)
    if best is None:
        raise ValueError("every weight gives a non-finite meta-val MSE: every member diverged")
    return best


def blend_mse(a: torch.Tensor, b: torch.Tensor, y: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-task MSE ``(N,)`` of ``weight * a + (1 - weight) * b`` against ``y`` (all ``(N, Q, D)``);
    at weight 0 or 1 the other member is not read (a diverged member does not spoil it)."""
    return stack_mse((a, b), y, (weight, 1 - weight))


def choose_weight(
    a: torch.Tensor, b: torch.Tensor, y: torch.Tensor, grid: tuple[float, ...] = WEIGHT_GRID
) -> tuple[float, float]:
    """``(weight, mean MSE)`` of the point of ``grid`` (the weight on ``a``) with the lowest mean
    MSE (the first, on a tie), as :func:`choose_weights` for two members."""
    weights, m = choose_weights((a, b), y, [(w, 1 - w) for w in grid])
    return weights[0], m


def run_stack(members: Sequence[MethodResult], family: TaskFamily, plan: EvalPlan, *,
              name: str = "stack") -> MethodResult:  # fmt: skip
    """The blend ``name`` of trained results (``learner`` set, each a :class:`PredictsQueries`),
    scored like every method: weights on :func:`simplex_grid` chosen on meta-val, then the
    per-task MSE on the same meta-test tasks. Its training cost is the members' together; its
    ``weight`` is the first member's, ``weights`` all of them."""
    if family.metric != "mse":
        raise ValueError(f"{name} applies to regression families only")
    if len(members) < 2:
        raise ValueError(f"{name} needs two or more members, not {len(members)}")
    for r in members:
        if not isinstance(r.learner, PredictsQueries):
            raise ValueError(f"{name}: {r.method} cannot return its predictions")
    t0 = time.perf_counter()
    kw = {"shots": plan.shots, "query": plan.query, "seed": plan.seed, "device": plan.device}

    def preds(split: str, n: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        out = [member_predictions(r.learner, family, split=split, n_tasks=n, steps=r.steps, **kw)
               for r in members]  # fmt: skip
        return [p for p, _ in out], out[0][1]

    weights, val = choose_weights(*preds("val", plan.val_tasks))
    v = stack_mse(*preds("test", plan.test_tasks), weights)
    first = members[0]
    return MethodResult(name, "mse", over_tasks(v), first.steps, None,
                        sum(r.train_iterations for r in members),
                        sum(r.train_seconds for r in members), time.perf_counter() - t0, v,
                        groups=first.groups, val_mean=val,
                        members=tuple(r.method for r in members), weight=weights[0],
                        weights=weights)  # fmt: skip


def run_ensemble(a: MethodResult, b: MethodResult, family: TaskFamily, plan: EvalPlan
                 ) -> MethodResult:  # fmt: skip
    """The ``"ensemble"`` of two trained results: :func:`run_stack` of ``(a, b)``, its ``weight``
    the one on ``a`` (a point of :data:`WEIGHT_GRID`)."""
    return run_stack((a, b), family, plan, name="ensemble")
