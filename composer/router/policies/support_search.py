"""Routing by search at evaluation: the joint choice with the lowest *support* loss after adaptation
(no query data is read)."""

from __future__ import annotations

import torch

from metacompose.router.policies.base import RoutingDecision, RoutingProblem
from metacompose.router.relaxed import hard_route
from metacompose.router.search import route_combinations


class SupportSearchRouting:
    """Each slot takes the candidate of the joint choice with the lowest support loss.

    A slot's score of candidate c is minus the lowest loss among the joint choices that pick c;
    the per-slot argmax of these scores is the best joint choice.
    """

    label = "hard-support-search"

    def decide(self, problem: RoutingProblem) -> RoutingDecision:
        scores = slot_scores(problem.joint_losses(), problem.sizes)
        weights = {s: hard_route(sc) for s, sc in scores.items()}
        return RoutingDecision(
            weights=weights, choice={s: sc.argmax(dim=-1) for s, sc in scores.items()}
        )


def slot_scores(losses: torch.Tensor, sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    """slot -> ``(T, C)``: minus the lowest loss (``losses``: ``(K, T)``) of the joint choices
    that pick each candidate."""
    combos = route_combinations(sizes)
    scores = {}
    for i, s in enumerate(sizes):
        per = [losses[combos[:, i] == c].min(dim=0).values for c in range(sizes[s])]
        scores[s] = -torch.stack(per, dim=-1)
    return scores
