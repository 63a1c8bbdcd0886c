"""A *distil* phase of block restarts (slot ``d`` of ``restart.order``): fresh banks learn from
the kept replica's own routing.

The descriptor-routed learner trains each task on its true pair from the first meta-iteration,
and its candidates come out cleaner than those a data-routed run anneals into (a data-routed saw
keeps a one-knot notch that polishing leaves in place: docs/router.md, "Distilling the routing").
Once the data-routed learner routes most training tasks right, its own routing is a label as
good: a distil phase trains ``restarts`` fresh pairs of banks the way the descriptor-routed
learner trains (``routing="descriptor"``, annealed as a restart phase), each training task's pair
being the one the incumbent routes it to on all its points (support and query: both are
meta-training data) on the training grid of contexts. Nothing held out and no descriptor is read.

The incumbent and the distilled replicas are then scored as evaluation scores a learner, on
``keep_tasks`` fixed training tasks of the phase's own: each routed from its support points and
scored on its query points. The distilled replica of the lowest mean is kept only if its query MSE,
paired over those tasks, is below the incumbent's beyond doubt: the 95% interval of the ratio
(delta method) lies wholly below 1. Else the incumbent stays. Not the best-pair fit on support and
query points, which every other phase uses: that fit can favour the incumbent, whose tables were
kept and polished on those very tasks, over distilled banks that predict far better; and not the
lowest mean alone, which on 400 tasks kept a pair 4% better by chance that was 1.33x worse on
held-out pairs (docs/router.md, "Distilling the routing").
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import replace

import torch

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.modules.warp_line import WarpLineBank
from metacompose.stats import ci95_over_tasks
from metacompose.tasks.base import TaskBatch, TaskFamily, derive_seed
from metacompose.training.block_restarts import (
    Phase,
    agreement,
    anneal_pool,
    choices,
    chunks,
    fixed_fits,
    pool_learner,
)


class RoutedByTeacher:
    """``family``'s training tasks, each with the one-hot ``(f, g)`` the ``teacher`` routes it to
    from all its points as its descriptor (f's candidates first, as ``descriptor_pair`` reads)."""

    def __init__(self, family: TaskFamily, teacher: AnnealedSumLearner) -> None:
        self.family, self.teacher = family, teacher

    @torch.no_grad()
    def sample(self, n: int, **kwargs) -> TaskBatch:
        tasks = self.family.sample(n, **kwargs)
        every = replace(
            tasks,
            support_x=torch.cat([tasks.support_x, tasks.query_x], 1),
            support_y=torch.cat([tasks.support_y, tasks.query_y], 1),
        )
        routed = self.teacher.choices(every)
        counts = self.teacher.graph.num_candidates
        onehot = [torch.nn.functional.one_hot(routed[s], counts[s]) for s in ("f", "g")]
        return replace(tasks, descriptor=torch.cat(onehot, 1).to(tasks.support_x.dtype))


def teacher_of(learner: AnnealedSumLearner, f: WarpLineBank, g: WarpLineBank, *,
               amplitude: float) -> AnnealedSumLearner:  # fmt: skip
    """The incumbent ``f``, ``g`` (frozen copies, amplitude limit ``amplitude``) routing from data
    on the training grid of contexts, with ``learner``'s settings."""
    frozen = [copy.deepcopy(b).requires_grad_(False) for b in (f, g)]
    teacher = pool_learner(learner, frozen[:1], frozen[1:], anneal=1, eval_contexts=f.contexts)
    teacher.amplitude.fill_(amplitude)
    teacher.fit.fill_(0.0)
    return teacher.eval()


@torch.no_grad()
def routed_query_mse(pool: AnnealedSumLearner, tasks: TaskBatch) -> list[torch.Tensor]:
    """Each replica's query MSE per task of ``tasks`` (float64), routed and fitted on each task's
    support set as at evaluation; the pool's buffers are restored."""
    saved = pool.fit.clone()
    out = []
    try:
        for r in range(len(saved)):
            pool.fit.fill_(math.inf)
            pool.fit[r] = 0.0  # replica r is the kept one
            out.append(torch.cat([pool.evaluate(part)[-1] for part in chunks(tasks)]).double())
    finally:
        pool.fit.copy_(saved)
    return out


def keep_if_better(errors: list[torch.Tensor]) -> tuple[int, tuple[float, float] | None]:
    """Which of replica 0 (the incumbent) and the others ``errors`` (per-task errors on the same
    tasks) to keep: the other of lowest finite mean, if its ratio to the incumbent's, paired over
    the tasks, has a 95% interval wholly below 1, or if the incumbent's mean is not finite; else 0.
    Returns it and that ratio with the half-width of its interval, ``1.96 sd(a - R b) / (sqrt(N)
    mean(b))`` (``None``: no other replica has a finite mean; nan: the incumbent's is not finite).

    The candidate is chosen on the tasks that test it, so with several others a candidate no better
    than the incumbent passes more often than 2.5% of the time; what it costs then is a pair as good
    as the incumbent on these tasks."""
    means = [float(e.mean()) for e in errors]
    others = [r for r in range(1, len(errors)) if math.isfinite(means[r])]
    if not others:
        return 0, None
    best = min(others, key=means.__getitem__)
    if not math.isfinite(means[0]):
        return best, (math.nan, math.nan)
    if means[0] <= 0:  # the incumbent is exact on every task: nothing beats it
        return 0, (math.nan, math.nan)
    ratio = means[best] / means[0]
    half = float(ci95_over_tasks(errors[best] - ratio * errors[0])) / means[0]
    return (best if ratio + half < 1 else 0), (ratio, half)


def run_distil(learner: AnnealedSumLearner, f: WarpLineBank, g: WarpLineBank, family: TaskFamily,
               *, k: int, amplitude: float, restarts: int, steps: int, anneal: int, seed: int,
               lr: float, batch: int, shots: int, query: int, fixed: dict[str, TaskBatch],
               keep_tasks: int, stop: Callable[[], int] | None = None) -> Phase:  # fmt: skip
    """Phase ``k`` (0-based), slot ``d``: ``restarts`` fresh pairs of banks (built as ``f`` and
    ``g`` were) trained for ``steps`` meta-iterations, annealed over ``anneal`` (Adam at ``lr``),
    on the pairs the incumbent ``f``, ``g`` (amplitude limit ``amplitude``) routes the training
    tasks to. Replica 0 of the record is the incumbent; :func:`keep_if_better` on the
    :func:`routed_query_mse` of ``keep_tasks`` fixed training tasks says which is kept.
    The fresh banks, the task stream and the kept-rule's tasks depend only on ``seed`` and ``k``."""
    teacher = teacher_of(learner, f, g, amplitude=amplitude)
    torch.manual_seed(derive_seed(seed, "restart_banks", "banks", k))
    fs = [WarpLineBank(**f.spec()) for _ in range(restarts)]
    gs = [WarpLineBank(**g.spec()) for _ in range(restarts)]
    pool = pool_learner(learner, fs, gs, anneal=anneal, routing="descriptor")
    gen = torch.Generator().manual_seed(derive_seed(seed, "restart_banks", "tasks", k))
    anneal_pool(pool, RoutedByTeacher(family, teacher), steps=steps, lr=lr, batch=batch,
                shots=shots, query=query, generator=gen, desc=f"restart phase {k + 1} (d)",
                stop=stop)  # fmt: skip
    frozen = [copy.deepcopy(b).requires_grad_(False) for b in (*pool.f_banks, *pool.g_banks)]
    scored = pool_learner(learner, [teacher.f_banks[0], *frozen[:restarts]],
                          [teacher.g_banks[0], *frozen[restarts:]], anneal=1)  # fmt: skip
    scored.amplitude.copy_(torch.cat([teacher.amplitude, pool.amplitude]))
    fits = fixed_fits(scored, fixed["fit"])
    agree = agreement([choices(scored, r, fixed["agree"]) for r in range(len(fits))])
    gen = torch.Generator().manual_seed(derive_seed(seed, "restart_banks", "distil_keep", k))
    keep = family.sample(keep_tasks, shots=shots, query=query, generator=gen, split="train")
    errors = routed_query_mse(scored, keep)
    best, ratio = keep_if_better(errors)
    return Phase(slot="d", kept=best, fits=fits, agreement=agree, f=scored.f_banks[best],
                 g=scored.g_banks[best], amplitude=float(scored.amplitude[best]) if best else None,
                 query=[float(e.mean()) for e in errors],
                 ratio=None if ratio is None else list(ratio))  # fmt: skip
