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

The incumbent and the distilled replicas are then scored as evaluation scores a learner, on the
phase's fixed "agree" training tasks: each routed from its support points, its query MSE averaged.
The lowest is kept (the incumbent on a tie). Not the best-pair fit on support and query points,
which every other phase uses: that fit can favour the incumbent, whose tables were kept and
polished on those very tasks, over distilled banks that predict far better (docs/router.md,
"Distilling the routing").
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import replace

import torch

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.modules.warp_line import WarpLineBank
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
def routed_query_mse(pool: AnnealedSumLearner, tasks: TaskBatch) -> list[float]:
    """Each replica's mean query MSE on ``tasks``, routed and fitted on each task's support set
    as at evaluation; the pool's buffers are restored."""
    saved = pool.fit.clone()
    total = []
    try:
        for r in range(len(saved)):
            pool.fit.fill_(math.inf)
            pool.fit[r] = 0.0  # replica r is the kept one
            mse = torch.cat([pool.evaluate(part)[-1] for part in chunks(tasks)]).double()
            total.append(float(mse.mean()))
    finally:
        pool.fit.copy_(saved)
    return total


def run_distil(learner: AnnealedSumLearner, f: WarpLineBank, g: WarpLineBank, family: TaskFamily,
               *, k: int, amplitude: float, restarts: int, steps: int, anneal: int, seed: int,
               lr: float, batch: int, shots: int, query: int, fixed: dict[str, TaskBatch],
               stop: Callable[[], int] | None = None) -> Phase:  # fmt: skip
    """Phase ``k`` (0-based), slot ``d``: ``restarts`` fresh pairs of banks (built as ``f`` and
    ``g`` were) trained for ``steps`` meta-iterations, annealed over ``anneal`` (Adam at ``lr``),
    on the pairs the incumbent ``f``, ``g`` (amplitude limit ``amplitude``) routes the training
    tasks to. Replica 0 of the record is the incumbent; the lowest :func:`routed_query_mse` on
    ``fixed["agree"]`` is kept.
    The fresh banks and the task stream depend only on ``seed`` and ``k``."""
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
    routed = routed_query_mse(scored, fixed["agree"])
    best = min(range(len(routed)), key=lambda r: math.inf if math.isnan(routed[r]) else routed[r])
    return Phase(slot="d", kept=best, fits=fits, agreement=agree, f=scored.f_banks[best],
                 g=scored.g_banks[best], amplitude=float(scored.amplitude[best]) if best else None,
                 query=routed)  # fmt: skip
