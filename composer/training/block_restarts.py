"""Block restarts of an annealed sum learner's kept replica: the algorithm, without files.

A run of ``algo.name: annealed_sum`` that fails to route usually has one bank right and the other
merged (one candidate serving two primitives, a third primitive split over two candidates). A
*phase* learns one bank again: ``restarts`` fresh banks of the phase's slot, each paired with a
frozen copy of the incumbent's other bank, anneal as in training (Adam, ``tau`` from the learner's
``tau_start`` to ``tau_end``). Among the incumbent and the restarts, those whose best-pair fit on
fixed training tasks is within ``within`` times the lowest are eligible, and the one whose routing
of other fixed training tasks agrees most with the others' (mean NMI of the (f, g) choices) is kept.
Only training tasks are read. docs/router.md, "Block restarts after annealing", has the measurements.

A *polish* phase (slot ``p``) restarts nothing: both banks of the incumbent learn on together at
the learner's ``tau_end`` (each task claimed by its best pair: hard EM), and the polished banks are
kept when their fit on the fixed training tasks is lower than the incumbent's. Block restarts
learn each bank beside a frozen copy of the other; the polish lets the two settle together.

:mod:`metacompose.training.restart_stage` runs the phases on a run's checkpoint (``restart:`` in a
run config; ``scripts/restart_banks.py`` for a checkpoint already trained).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.modules.warp_line import WarpLineBank
from metacompose.progress import progress
from metacompose.router.metrics import normalized_mutual_info
from metacompose.tasks.base import TaskBatch, TaskFamily, derive_seed

CHUNK = 64  # tasks per meta_step when measuring fits and choices


class PhaseStopped(Exception):
    """``stop()`` said yes between two meta-iterations of a phase (its work is dropped)."""


@dataclass(frozen=True)
class Phase:
    """One phase's outcome: the kept replica (0: the incumbent), every replica's fit and
    agreement, and the banks and amplitude limit to keep."""

    slot: str
    kept: int
    fits: list[float]
    agreement: list[float]
    f: WarpLineBank
    g: WarpLineBank
    amplitude: float | None  # the kept restart's limit; None: the incumbent's stays
    query: list[float] | None = None  # a distil phase's rule: each replica's routed query MSE
    ratio: list[float] | None = None  # and its best distilled / incumbent (paired): mean, 95% half

    def record(self) -> dict:
        out = {"slot": self.slot, "fits": self.fits, "agreement": self.agreement, "kept": self.kept}
        extra = {"query": self.query, "query_ratio": self.ratio}
        return out | {k: v for k, v in extra.items() if v is not None}


def why_not_restartable(learner) -> str | None:
    """Why block restarts cannot run on ``learner`` (``None``: they can)."""
    if not isinstance(learner, AnnealedSumLearner):
        return f"the learner is {type(learner).__name__}, not annealed_sum"
    if learner.shared or learner.routing != "data":
        return (f"they need two banks, trained from data (structure {learner.structure}, shared "
                f"{learner.shared}, routing {learner.routing})")  # fmt: skip
    return None


def pick(fits: list[float], agree: list[float], *, within: float) -> int:
    """The index with the highest ``agree`` among those whose fit is at most ``within`` times the
    lowest finite fit (ties: the lower index); every index when no fit is finite."""
    finite = [f for f in fits if math.isfinite(f)]
    low = min(finite) if finite else math.inf
    pool = [i for i, f in enumerate(fits) if not finite or f <= within * low]
    return max(pool, key=lambda i: (agree[i], -i))


def agreement(labels: list[list]) -> list[float]:
    """Each labelling's mean NMI with every other one (1.0 for a single labelling)."""
    n = len(labels)
    if n == 1:
        return [1.0]
    nmi = [[normalized_mutual_info(a, b) if i < j else 0.0 for j, b in enumerate(labels)]
           for i, a in enumerate(labels)]  # fmt: skip
    return [sum(nmi[min(i, j)][max(i, j)] for j in range(n) if j != i) / (n - 1) for i in range(n)]


def pool_learner(template: AnnealedSumLearner, f_banks, g_banks, *, anneal: int,
                 routing: str = "data", eval_contexts: int | None = None):  # fmt: skip
    """A learner over the given banks with ``template``'s settings, annealing over ``anneal``: its
    fits' offset too, not its pilot terms (``cross_fit``, ``balance_steps``). ``routing`` in
    meta-training (evaluation routes from data); ``eval_contexts``: default ``template``'s."""
    pool = AnnealedSumLearner(
        f_banks=f_banks, g_banks=g_banks, tau_start=template.tau_start, tau_end=template.tau_end,
        anneal_steps=anneal, eval_contexts=eval_contexts or len(template.eval_grid),
        ridge=template.ridge, fit_decay=template.fit_decay, refine=template.refine,
        routing=routing, eval_routing="data", structure=template.structure,
    )  # fmt: skip
    pool.offset = template.offset
    return pool


def restart_pool(template, f, g, *, slot: str, restarts: int, anneal: int):
    """Replica 0: the incumbent ``f``, ``g`` (frozen); then ``restarts`` replicas, each a fresh bank
    for ``slot`` (as the incumbent's was built) and a frozen copy of the other bank."""
    incumbent = [copy.deepcopy(f).requires_grad_(False), copy.deepcopy(g).requires_grad_(False)]
    keep = incumbent[1] if slot == "f" else incumbent[0]
    fresh_like = f if slot == "f" else g
    fresh = [WarpLineBank(**fresh_like.spec()) for _ in range(restarts)]
    frozen = [copy.deepcopy(keep) for _ in range(restarts)]
    fs, gs = (fresh, frozen) if slot == "f" else (frozen, fresh)
    return pool_learner(template, [incumbent[0], *fs], [incumbent[1], *gs], anneal=anneal)


def anneal_pool(pool, family, *, steps: int, lr: float, batch: int, shots: int, query: int,
                generator: torch.Generator, desc: str,
                stop: Callable[[], int] | None = None) -> None:  # fmt: skip
    """Meta-train the pool's trainable banks for ``steps`` meta-iterations (Adam); raises
    :class:`PhaseStopped` when ``stop()`` is non-zero (a signal) before a meta-iteration."""
    opt = torch.optim.Adam([p for p in pool.parameters() if p.requires_grad], lr=lr)
    pool.train()
    for step in progress(range(steps), desc=desc, unit="step"):
        if stop is not None and stop():
            raise PhaseStopped
        tasks = family.sample(batch, shots=shots, query=query, generator=generator, split="train")
        out = pool.meta_step(tasks, step=step)
        opt.zero_grad()
        out.objective.backward()
        opt.step()
    pool.eval()


def run_polish(learner: AnnealedSumLearner, f: WarpLineBank, g: WarpLineBank, family: TaskFamily,
               *, k: int, amplitude: float, steps: int, seed: int, lr: float, batch: int,
               shots: int, query: int, fixed: dict[str, TaskBatch],
               stop: Callable[[], int] | None = None) -> Phase:  # fmt: skip
    """Phase ``k`` (0-based), slot ``p``: the incumbent banks ``f``, ``g`` (amplitude limit
    ``amplitude``) learnt on together for ``steps`` meta-iterations at the learner's ``tau_end``
    (Adam at ``lr``); replica 1 of the phase's record, kept when its fit on ``fixed["fit"]`` is
    lower than the incumbent's (replica 0). Its task stream depends only on ``seed`` and ``k``."""
    both = [copy.deepcopy(b).requires_grad_(True) for b in (f, g)]
    pool = pool_learner(learner, both[:1], both[1:], anneal=1)
    pool.tau_start = pool.tau_end  # no annealing: the assignment is already hard
    gen = torch.Generator().manual_seed(derive_seed(seed, "restart_banks", "tasks", k))
    anneal_pool(pool, family, steps=steps, lr=lr, batch=batch, shots=shots, query=query,
                generator=gen, desc=f"restart phase {k + 1} (p)", stop=stop)  # fmt: skip
    frozen = [copy.deepcopy(b).requires_grad_(False) for b in (f, g, *both)]
    pair = pool_learner(learner, frozen[0::2], frozen[1::2], anneal=1)
    pair.amplitude.copy_(torch.stack([pool.amplitude.new_tensor(amplitude), pool.amplitude[0]]))
    fits = fixed_fits(pair, fixed["fit"])
    agree = agreement([choices(pair, r, fixed["agree"]) for r in range(2)])
    best = int(fits[1] < fits[0])
    amplitude = float(pool.amplitude[0]) if best else None
    return Phase(slot="p", kept=best, fits=fits, agreement=agree, f=pair.f_banks[best],
                 g=pair.g_banks[best], amplitude=amplitude)  # fmt: skip


def chunks(tasks: TaskBatch):
    n = len(tasks.support_x)
    return [tasks.slice(i, min(n, i + CHUNK)) for i in range(0, n, CHUNK)]


@torch.no_grad()
def fixed_fits(pool: AnnealedSumLearner, tasks: TaskBatch) -> list[float]:
    """Each replica's mean best-pair fit on ``tasks`` (support and query points, as meta-training
    measures it); the pool's buffers and mode are restored."""
    saved = pool.fit.clone(), pool.amplitude.clone()
    total = torch.zeros(len(saved[0]), dtype=torch.float64)
    pool.train()
    try:
        for part in chunks(tasks):
            pool.fit.fill_(math.nan)
            pool.meta_step(part)
            total += pool.fit.double() * len(part.support_x)
    finally:
        pool.fit.copy_(saved[0])
        pool.amplitude.copy_(saved[1])
        pool.eval()
    return (total / len(tasks.support_x)).tolist()


@torch.no_grad()
def choices(pool: AnnealedSumLearner, r: int, tasks: TaskBatch) -> list[tuple[int, int]]:
    """Replica ``r``'s (f, g) choice for each of ``tasks``, routed from the support set."""
    saved = pool.fit.clone()
    pool.fit.fill_(math.inf)
    pool.fit[r] = 0.0
    try:
        out = []
        for part in chunks(tasks):
            picked = pool.choices(part)
            out += list(zip(picked["f"].tolist(), picked["g"].tolist(), strict=True))
    finally:
        pool.fit.copy_(saved)
    return out


def fixed_tasks(family: TaskFamily, *, seed: int, shots: int, query: int, fit_tasks: int,
                agree_tasks: int) -> dict[str, TaskBatch]:  # fmt: skip
    """The fixed training tasks every phase measures fits (``"fit"``) and agreement on."""
    out = {}
    for name, n in (("fit", fit_tasks), ("agree", agree_tasks)):
        gen = torch.Generator().manual_seed(derive_seed(seed, "restart_banks", name))
        out[name] = family.sample(n, shots=shots, query=query, generator=gen, split="train")
    return out


def run_phase(learner: AnnealedSumLearner, f: WarpLineBank, g: WarpLineBank, family: TaskFamily,
              *, k: int, slot: str, restarts: int, steps: int, anneal: int, within: float,
              seed: int, lr: float, batch: int, shots: int, query: int,
              fixed: dict[str, TaskBatch], stop: Callable[[], int] | None = None) -> Phase:  # fmt: skip
    """Phase ``k`` (0-based) of the incumbent banks ``f``, ``g``: its fresh banks and task stream
    depend only on ``seed`` and ``k``, so a phase run again gives the same result."""
    torch.manual_seed(derive_seed(seed, "restart_banks", "banks", k))
    pool = restart_pool(learner, f, g, slot=slot, restarts=restarts, anneal=anneal)
    gen = torch.Generator().manual_seed(derive_seed(seed, "restart_banks", "tasks", k))
    anneal_pool(pool, family, steps=steps, lr=lr, batch=batch, shots=shots, query=query,
                generator=gen, desc=f"restart phase {k + 1} ({slot})", stop=stop)  # fmt: skip
    fits = fixed_fits(pool, fixed["fit"])
    agree = agreement([choices(pool, r, fixed["agree"]) for r in range(len(fits))])
    best = pick(fits, agree, within=within)
    amplitude = float(pool.amplitude[best]) if best else None
    return Phase(slot=slot, kept=best, fits=fits, agreement=agree, f=pool.f_banks[best],
                 g=pool.g_banks[best], amplitude=amplitude)  # fmt: skip
