"""Routing by search while meta-training (Alet et al. 2018): each task takes the joint choice whose
adapted model has the lowest query loss, and the router's logits learn that choice.

For the first ``steps`` meta-iterations; afterwards ``then`` (the router's own routing) decides. With
``anneal`` the choice is sampled, as simulated annealing over structures, instead of the best.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metacompose.router.policies.base import (
    RoutingDecision,
    RoutingPolicy,
    RoutingProblem,
    one_hot_decision,
)
from metacompose.router.relaxed import TemperatureSchedule, gumbel_noise
from metacompose.router.search import route_combinations


class SearchRouting:
    """Searched routing for ``steps`` meta-iterations, then ``then``.

    Args:
        steps: meta-iterations routed by search.
        weight: weight of the router's cross-entropy to the searched choice.
        then: the policy from meta-iteration ``steps`` on.
        anneal: sample each task's choice with probability ``softmax(-losses / (mean * tau))``
            (``tau = anneal(step)``) instead of taking the lowest loss; ``None``: the lowest.
    """

    label = "hard-search"

    def __init__(
        self,
        *,
        steps: int,
        weight: float,
        then: RoutingPolicy,
        anneal: TemperatureSchedule | None = None,
    ) -> None:
        self.steps = int(steps)
        self.weight = float(weight)
        self.then = then
        self.anneal = anneal

    def decide(self, problem: RoutingProblem) -> RoutingDecision:
        if problem.step >= self.steps or not problem.sizes:
            return self.then.decide(problem)
        losses = problem.joint_losses()  # (K, T)
        if self.anneal is None:
            picked = losses.argmin(dim=0)
        else:
            picked = annealed_pick(losses, self.anneal(problem.step), problem.generator)
        combos = route_combinations(problem.sizes)[picked]  # (T, S)
        choice = {s: combos[:, i] for i, s in enumerate(problem.sizes)}
        decision = one_hot_decision(choice, problem.sizes, problem.like)
        ce = [F.cross_entropy(problem.logits[s], c) for s, c in choice.items()]
        decision.penalties.append(self.weight * sum(ce) / len(ce))
        return decision


def annealed_pick(losses: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """Per task (column of ``losses``, ``(K, T)``), a row sampled with probability
    ``softmax(-losses / (mean * tau))`` (Gumbel-max; losses normalised per task): near random
    while ``tau`` is high, near the lowest loss once it is low. Returns ``(T,)`` row indices."""
    rel = losses / losses.mean(dim=0, keepdim=True).clamp_min(1e-12)
    z = -rel / tau + gumbel_noise(tuple(losses.shape), generator)
    return z.argmax(dim=0)
