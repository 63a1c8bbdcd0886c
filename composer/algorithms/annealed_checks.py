"""The arguments of :class:`~metacompose.algorithms.annealed_sum.AnnealedSumLearner`, checked:
each wrong one is a ``ValueError`` naming it and its value."""

from __future__ import annotations

from typing import get_args

from metacompose.algorithms.sum_banks import Routing, Structure
from metacompose.modules.warp_line import INITS, WarpLineBank

ROUTINGS = get_args(Routing)
STRUCTURES = get_args(Structure)


def check_annealed_arguments(
    *, f_banks: list[WarpLineBank], g_banks: list[WarpLineBank], tau_start: float,
    tau_end: float, anneal_steps: int, eval_contexts: int, ridge: float, routing: str,
    eval_routing: str | None, structure: str, refine: int,
) -> None:  # fmt: skip
    """Raise ``ValueError`` for the first argument out of its range (see the learner's ``Args``)."""
    if structure not in STRUCTURES:
        raise ValueError(f"structure={structure}: expected one of {', '.join(STRUCTURES)}")
    if refine < 0:
        raise ValueError(f"refine={refine}: must be >= 0")
    if refine and structure != "sum":
        raise ValueError(f"refine={refine}: refines the sum's contexts only (structure=sum)")
    for name, value in (("routing", routing), ("eval_routing", eval_routing or routing)):
        if value not in ROUTINGS:
            raise ValueError(f"{name}={value}: expected one of {', '.join(ROUTINGS)}")
    if (routing == "uniform") != ((eval_routing or routing) == "uniform"):
        raise ValueError(
            f"eval_routing={eval_routing} with routing={routing}: uniform routing is "
            "trained and evaluated alike (set both or neither)"
        )
    if not f_banks or len(f_banks) != len(g_banks):
        raise ValueError("one f-bank and one g-bank per replica, at least one replica")
    if tau_start <= 0:
        raise ValueError(f"tau_start={tau_start}: must be > 0")
    if not 0 < tau_end <= tau_start:
        raise ValueError(f"tau_end={tau_end}: must be > 0 and <= tau_start={tau_start}")
    for name, value in (("anneal_steps", anneal_steps), ("eval_contexts", eval_contexts)):
        if value < 1:
            raise ValueError(f"{name}={value}: must be >= 1")
    if ridge <= 0:
        raise ValueError(f"ridge={ridge}: must be > 0 (keeps a flat candidate solvable)")
    shared = [f is g for f, g in zip(f_banks, g_banks, strict=True)]
    if any(shared) and not all(shared):
        raise ValueError("a shared bank: every replica's f-bank and g-bank must be one bank")
    if all(shared):
        if structure != "sum" or routing != "data" or (eval_routing or routing) != "data":
            raise ValueError(
                f"a shared bank with structure={structure}, routing={routing}, "
                f"eval_routing={eval_routing}: one shared bank serves the sum routed from data"
            )
        if f_banks[0].count < 2:
            raise ValueError(f"a shared bank needs >= 2 candidates, has {f_banks[0].count}")


def check_bank_arguments(
    *, candidates: list[int], replicas: int, span: float, g_span: float | None,
    max_shift: float | None, structure: str, balance_steps: int = 0, routing: str = "data",
    balanced_replicas: int | None = None,
) -> None:  # fmt: skip
    """Raise ``ValueError`` for the first of the builder's bank arguments out of its range, named
    as the config writes it (``algo.args.candidates``, not the bank's ``count``)."""
    if len(candidates) not in (1, 2):
        raise ValueError(
            f"candidates={candidates}: must be [f-candidates, g-candidates], or [n]: one bank "
            "that both terms of the sum share"
        )
    if any(n < 1 for n in candidates):
        raise ValueError(f"candidates={candidates}: every count must be >= 1")
    if replicas < 1:
        raise ValueError(f"replicas={replicas}: must be >= 1")
    if not 0.0 < span <= 1e4:
        raise ValueError(f"span={span}: must be in (0, 1e4]")
    if structure not in STRUCTURES:
        raise ValueError(f"structure={structure}: expected one of {', '.join(STRUCTURES)}")
    if g_span is not None and not 0.0 < g_span <= 1e4:
        raise ValueError(f"g_span={g_span}: must be in (0, 1e4]")
    if g_span is not None and max_shift is not None and max_shift > g_span:
        raise ValueError(f"max_shift={max_shift}: must be <= g_span={g_span} (the g-bank's span)")
    if balance_steps < 0:
        raise ValueError(f"balance_steps={balance_steps}: must be >= 0")
    if balance_steps and (structure != "sum" or len(candidates) != 2 or routing != "data"):
        raise ValueError(
            f"balance_steps={balance_steps}: balances the two banks of the sum routed from data "
            f"only (structure={structure}, candidates={candidates}, routing={routing})"
        )
    if balanced_replicas is not None and not balance_steps:
        raise ValueError(
            f"balanced_replicas={balanced_replicas}: needs balance_steps > 0 (the balanced E-step "
            "it applies to some replicas)"
        )
    if balanced_replicas is not None and not 1 <= balanced_replicas <= replicas:
        raise ValueError(
            f"balanced_replicas={balanced_replicas}: must be in [1, replicas={replicas}]"
        )


def slot_inits(init: str | list[str], *, candidates: list[int]) -> dict[str, str]:
    """``init`` as a config writes it, one for both banks or ``[f's, g's]``, as ``{"f": .., "g":
    ..}``; ``ValueError`` naming it otherwise (a shared bank, ``candidates=[n]``, has one)."""
    inits = [init] if isinstance(init, str) else list(init)
    if len(inits) not in (1, 2) or any(not isinstance(i, str) or i not in INITS for i in inits):
        raise ValueError(
            f"init={init}: expected one of {', '.join(INITS)}, or two of them: [f-bank's, g-bank's]"
        )
    if len(candidates) == 1 and len(set(inits)) > 1:
        raise ValueError(f"init={init}: one bank shared by both terms (candidates={candidates}) "
                         "starts one way")  # fmt: skip
    return {"f": inits[0], "g": inits[-1]}
