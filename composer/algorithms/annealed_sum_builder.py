"""``algo.name: annealed_sum``: the arguments a run config hands the data-routed learner
(:class:`~metacompose.algorithms.annealed_sum.AnnealedSumLearner`) and the banks it builds."""

from __future__ import annotations

from metacompose.algorithms.annealed_checks import check_bank_arguments, slot_inits
from metacompose.algorithms.annealed_sum import AnnealedSumLearner, Routing
from metacompose.algorithms.cross_fit import check_cross_fit
from metacompose.algorithms.sum_banks import SLOTS, Structure
from metacompose.graph import ModuleGraph
from metacompose.modules.warp_line import WarpLineBank


def annealed_sum_learner(
    *,
    encoder: ModuleGraph,
    targets: int,
    classification: bool,
    candidates: list[int] | tuple[int, int] = (4, 4),
    knots: int = 96,
    span: float = 9.0,
    contexts: int = 15,
    eval_contexts: int = 41,
    spread: float = 0.3,
    replicas: int = 4,
    max_stretch: float = 0.6,
    max_shift: float | None = None,
    tau_start: float = 1.0,
    tau_end: float = 0.003,
    anneal_steps: int = 2400,
    ridge: float = 1e-4,
    routing: Routing = "data",
    eval_routing: Routing | None = None,
    structure: Structure = "sum",
    g_span: float | None = None,
    init: str | list[str] = "random",
    refine: int = 0,
    balance_steps: int = 0,
    balanced_replicas: int | None = None,
    cross_fit: float = 0.0,
    offset: bool = True,
) -> AnnealedSumLearner:
    """An :class:`AnnealedSumLearner` for one-dimensional regression (``algo.name:
    annealed_sum``); ``candidates``: ``[f-candidates, g-candidates]``, or ``[n]``: one bank of
    ``n`` shared by both terms of the sum, its pairs the unordered pairs ``i < j``; ``structure``: ``sum``
    (``y = a f(x) + b g(x) + c``) or ``chain`` (``y = a g(f(x)) + c``); ``g_span``: the span of
    the g-bank's tables (default ``span``; the chain's g reads f's outputs, a narrower range);
    ``init``: how the tables start (:class:`WarpLineBank`), both banks or ``[f, g]``;
    ``refine``: rounds of sub-grid context search (:class:`AnnealedSumLearner`);
    ``balance_steps``: > 0, each meta-batch's posterior over pairs is pulled toward equal use of
    every candidate, fully at step 0 and not at all from this step on
    (:mod:`~metacompose.algorithms.balanced_pairs`; a pilot, docs/router.md);
    ``balanced_replicas``: how many replicas (the last ones) do so (default: every one); the
    others optimise the plain objective and the lowest running fit still picks the kept one;
    ``cross_fit``: the weight of a pilot term (:mod:`~metacompose.algorithms.cross_fit`);
    ``offset``: every fit has an offset, ``y = a f(x) + b g(x) + c`` (``a g(f(x)) + c``); false:
    none, as in a family whose tasks have none (docs/router.md, "The offset the tasks do not
    have"). The model section's graph (``encoder``) is read for its input width only."""
    if classification or targets != 1 or tuple(encoder.in_space.shape) != (1,):
        raise ValueError(
            "annealed_sum fits a sum or chain of two candidates: it needs one input and one regression "
            f"target; the task has input {encoder.in_space} and "
            f"{'classes' if classification else 'targets'}={targets}"
        )
    if not isinstance(offset, bool):
        raise ValueError(f"offset={offset!r}: must be true or false")
    cands = list(candidates)
    check_cross_fit(cross_fit, sum_of_two=structure == "sum" and len(cands) == 2, routing=routing)
    check_bank_arguments(candidates=cands, replicas=replicas, span=span, g_span=g_span,
                         max_shift=max_shift, structure=structure, balance_steps=balance_steps,
                         routing=routing, balanced_replicas=balanced_replicas)  # fmt: skip
    kw = {"knots": knots, "contexts": contexts, "spread": spread, "max_stretch": max_stretch,
          "max_shift": max_shift}  # fmt: skip
    inits, spans = slot_inits(init, candidates=cands), {"f": span, "g": g_span or span}
    banks = {slot: [WarpLineBank(count=n, span=spans[slot], init=inits[slot], **kw)
                    for _ in range(replicas)] for slot, n in zip(SLOTS, cands)}  # fmt: skip
    if len(cands) == 1:  # one bank per replica, read by both terms: shared
        banks["g"] = banks["f"]
    learner = AnnealedSumLearner(
        f_banks=banks["f"], g_banks=banks["g"], tau_start=tau_start, tau_end=tau_end,
        anneal_steps=anneal_steps, eval_contexts=eval_contexts, ridge=ridge, routing=routing,
        eval_routing=eval_routing, structure=structure, refine=refine,
    )  # fmt: skip
    learner.balance_steps, learner.cross_fit = int(balance_steps), float(cross_fit)
    learner.offset = offset
    learner.balance_from = replicas - (replicas if balanced_replicas is None else balanced_replicas)
    return learner
