"""A convex combination of two trained regression learners' predictions, its weight chosen on
meta-val tasks (model averaging / stacking with one weight).

``w * a + (1 - w) * b`` of two members' query predictions, each member adapted as it is scored
alone (its adaptation steps chosen on meta-val). ``w`` is the point of a grid on ``[0, 1]`` with
the lowest mean meta-val MSE; both ends are on the grid, so the ensemble can fall back to either
member. Per task, ``MSE(w)`` is a quadratic in ``w`` whose minimum is at or below both ends when
the members disagree, which is what averaging buys.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import torch

from metacompose.baselines.compare import EvalPlan, MethodResult
from metacompose.report.curves import default_batch_size, seeded_tasks
from metacompose.report.stats import over_tasks
from metacompose.tasks.base import TaskBatch, TaskFamily

WEIGHT_GRID = tuple(i / 10 for i in range(11))


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


def blend_mse(a: torch.Tensor, b: torch.Tensor, y: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-task MSE ``(N,)`` of ``weight * a + (1 - weight) * b`` against ``y`` (all ``(N, Q, D)``);
    at weight 0 or 1 the other member is not read (a diverged one does not spoil it)."""
    blend = b if weight == 0 else a if weight == 1 else weight * a + (1 - weight) * b
    return (blend - y).pow(2).flatten(1).mean(1)


def choose_weight(
    a: torch.Tensor, b: torch.Tensor, y: torch.Tensor, grid: tuple[float, ...] = WEIGHT_GRID
) -> tuple[float, float]:
    """``(weight, mean MSE)`` of the grid point with the lowest mean MSE (the first, on a tie);
    a weight whose MSE is not finite is never chosen (a diverged member gets weight 0 if the other
    is finite)."""
    best = None
    for w in grid:
        m = float(blend_mse(a, b, y, w).mean())
        if m == m and m != float("inf") and (best is None or m < best[1]):
            best = (w, m)
    if best is None:
        raise ValueError("every weight gives a non-finite meta-val MSE: both members diverged")
    return best


def run_ensemble(a: MethodResult, b: MethodResult, family: TaskFamily, plan: EvalPlan
                 ) -> MethodResult:  # fmt: skip
    """The ``"ensemble"`` of two trained results (``learner`` set, each a
    :class:`PredictsQueries`), scored like every method: weight chosen on meta-val, then the
    per-task MSE on the same meta-test tasks. Its training cost is the members' together."""
    if family.metric != "mse":
        raise ValueError("ensemble applies to regression families only")
    for r in (a, b):
        if not isinstance(r.learner, PredictsQueries):
            raise ValueError(f"ensemble: {r.method} cannot return its predictions")
    t0 = time.perf_counter()
    kw = {"shots": plan.shots, "query": plan.query, "seed": plan.seed, "device": plan.device}

    def preds(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pa, y = member_predictions(a.learner, family, split=split, n_tasks=n, steps=a.steps, **kw)
        pb, _ = member_predictions(b.learner, family, split=split, n_tasks=n, steps=b.steps, **kw)
        return pa, pb, y

    weight, val = choose_weight(*preds("val", plan.val_tasks))
    v = blend_mse(*preds("test", plan.test_tasks), weight)
    return MethodResult("ensemble", "mse", over_tasks(v), a.steps, None,
                        a.train_iterations + b.train_iterations,
                        a.train_seconds + b.train_seconds, time.perf_counter() - t0, v,
                        groups=a.groups, val_mean=val, members=(a.method, b.method),
                        weight=weight)  # fmt: skip
