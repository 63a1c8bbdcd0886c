"""The router's hard decision under composition rules: the best valid graph, not a plain argmax.

Per task, each slot of a :class:`~metacompose.router.pool.ModulePool` picks one candidate; the score
of a joint choice is the sum over routed slots of the router's log-probabilities (so without
rules the answer is the per-slot argmax). :func:`symbolic.best_valid_selection` maximises it
subject to the rules (z3 ``Optimize``, or the exact search it falls back to). Candidates are named
by module type (e.g. ``MLPBlock``) for the rules' required / forbidden / exclusive lists, carry
their typed spaces for interface compatibility and their parameter counts for the budget.
"""

from __future__ import annotations

import torch

from metacompose.router.policies import RoutingDecision, RoutingProblem, one_hot_decision
from metacompose.router.pool import ModulePool
from metacompose.symbolic import Candidate, CompositionRules, best_valid_selection


class RulesValidRouting:
    """Routing policy at evaluation: each task's best joint choice under composition rules.

    Args:
        pool: the pool whose slots are chosen (candidate types, spaces, sizes).
        rules: composition rules (:func:`metacompose.symbolic.load_rules`).
    """

    label = "hard-rules-valid"

    def __init__(self, *, pool: ModulePool, rules: CompositionRules) -> None:
        self.pool, self.rules = pool, rules

    def decide(self, problem: RoutingProblem) -> RoutingDecision:
        logits = {s: problem.logits[s] for s in problem.sizes}
        choice = best_valid_choice(self.pool, logits, self.rules)
        return one_hot_decision(choice, problem.sizes, problem.like)


def pool_candidates(
    pool: ModulePool, scores: dict[str, torch.Tensor]
) -> dict[str, list[Candidate]]:
    """Every slot's candidates with scores (``scores[slot]``: ``(C,)``; unrouted slots score 0)."""
    out = {}
    for slot in pool.slot_names:
        s = scores.get(slot)
        out[slot] = [
            Candidate(
                module=type(m).__name__,
                in_space=str(m.in_space),
                out_space=str(m.out_space),
                params=m.num_parameters(),
                score=0.0 if s is None else float(s[i]),
            )
            for i, m in enumerate(pool.candidate(slot, i) for i in range(pool.num_candidates[slot]))
        ]
    return out


def best_valid_choice(
    pool: ModulePool,
    logits: dict[str, torch.Tensor],
    rules: CompositionRules,
    *,
    engine: str = "auto",
    timeout_ms: int = 10000,
) -> dict[str, torch.Tensor]:
    """The best joint choice per task that obeys ``rules``.

    Args:
        pool: the module pool whose slots are chosen.
        logits: routed slot -> ``(T, C)`` router logits.
        rules: composition rules (:func:`symbolic.load_rules`).

    Returns:
        routed slot -> ``(T,)`` chosen candidate indices (long).

    Raises:
        ValueError: no valid graph exists (naming the rules in z3's unsat core), or the
            solver ran out of time.
    """
    slots = list(logits)
    num_tasks = next(iter(logits.values())).shape[0] if logits else 1
    logp = {s: torch.log_softmax(lg.detach().to(torch.float64), dim=-1) for s, lg in logits.items()}
    chosen = {s: torch.zeros(num_tasks, dtype=torch.long) for s in slots}
    for t in range(num_tasks):
        cands = pool_candidates(pool, {s: lp[t] for s, lp in logp.items()})
        sel = best_valid_selection(cands, pool.edges, rules, engine=engine, timeout_ms=timeout_ms)
        if sel.status != "optimal":
            why = ", ".join(sel.violated) or sel.status
            raise ValueError(f"{rules.source}: no valid graph for task {t} ({sel.status}: {why})")
        for s in slots:
            chosen[s][t] = sel.choice[s]
    return {s: c.to(logits[s].device) for s, c in chosen.items()}
