"""Routing from data at evaluation: the router proposes, the support loss decides.

The router's k most probable joint choices (its slot distributions multiplied) are each adapted on
the task's support set; the one with the lowest support loss after adaptation is the routing. The
query set is never read. ``k = 1`` is the router's argmax; ``k`` = all joint choices is support
search. Evaluation costs k adaptations per task instead of one per joint choice.
"""

from __future__ import annotations

import torch

from metacompose.router.policies.base import RoutingDecision, RoutingProblem, one_hot_decision
from metacompose.router.search import route_combinations


class TopKSupportRouting:
    """The router's top-``k`` joint choices, re-ranked by the support loss after adaptation.

    Args:
        k: joint choices adapted per task (at most all of them).
    """

    label = "hard-top-k-support-search"

    def __init__(self, *, k: int) -> None:
        if k < 1:
            raise ValueError(f"top-k routing needs k >= 1, got {k}")
        self.k = int(k)

    def decide(self, problem: RoutingProblem) -> RoutingDecision:
        combos = route_combinations(problem.sizes)
        picks = top_joint_choices(
            [problem.logits[s] for s in problem.sizes], combos, self.k
        )  # (T, k)
        if picks.shape[1] > 1:
            losses = problem.choice_losses(picks)  # (k, T)
            best = picks[torch.arange(picks.shape[0]), losses.argmin(dim=0)]
        else:
            best = picks[:, 0]
        choice = {s: combos[best, i] for i, s in enumerate(problem.sizes)}
        return one_hot_decision(choice, problem.sizes, problem.like)


def top_joint_choices(logits: list[torch.Tensor], combos: torch.Tensor, k: int) -> torch.Tensor:
    """``(T, min(k, K))`` rows of ``combos`` (``(K, S)``) with the highest joint log-probability
    ``sum_s log_softmax(logits[s])[combo[s]]`` (``logits``: ``(T, C_s)`` per slot, in slot
    order), most probable first."""
    joint = sum(torch.log_softmax(lg, dim=-1)[:, combos[:, i]] for i, lg in enumerate(logits))
    return joint.topk(min(k, combos.shape[0]), dim=-1).indices
