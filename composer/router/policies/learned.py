"""The router's own routing: Gumbel-softmax while meta-training, argmax at evaluation."""

from __future__ import annotations

from metacompose.router.policies.base import RoutingDecision, RoutingProblem
from metacompose.router.relaxed import (
    TemperatureSchedule,
    balance_loss,
    gumbel_noise,
    hard_route,
    mean_entropy,
    relaxed_route,
)


class RelaxedRouting:
    """Gumbel-softmax routing at temperature ``schedule(step)``, plus routing-health penalties.

    Args:
        schedule: temperature per meta-iteration.
        straight_through: one-hot forward with the soft gradient (else soft weights).
        balance_weight: weight of ``log C - H(mean routing)`` (0: no term).
        entropy_weight: weight of the mean per-task routing entropy (0: no term).
    """

    label = "relaxed"

    def __init__(
        self,
        *,
        schedule: TemperatureSchedule,
        straight_through: bool = True,
        balance_weight: float = 0.0,
        entropy_weight: float = 0.0,
    ) -> None:
        self.schedule = schedule
        self.straight_through = straight_through
        self.balance_weight = float(balance_weight)
        self.entropy_weight = float(entropy_weight)

    def decide(self, problem: RoutingProblem) -> RoutingDecision:
        tau = self.schedule(problem.step)
        weights = {}
        for s, lg in problem.logits.items():
            noise = gumbel_noise((problem.num_tasks, problem.sizes[s]), problem.generator)
            weights[s] = relaxed_route(
                lg, tau=tau, noise=noise, straight_through=self.straight_through
            )
        return RoutingDecision(weights=weights, penalties=self.penalties(problem))

    def penalties(self, problem: RoutingProblem) -> list:
        """The weighted balance and entropy terms of the routing probabilities (non-zero only)."""
        if not problem.logits:
            return []
        probs = [lg.softmax(dim=-1) for lg in problem.logits.values()]
        terms = []
        for weight, term in (
            (self.balance_weight, balance_loss),
            (self.entropy_weight, mean_entropy),
        ):
            if weight:
                terms.append(weight * sum(map(term, probs)) / len(probs))
        return terms


class ArgmaxRouting:
    """Hard routing by the router alone: the one-hot argmax of its logits."""

    label = "hard-learned"

    def decide(self, problem: RoutingProblem) -> RoutingDecision:
        weights = {s: hard_route(lg) for s, lg in problem.logits.items()}
        choice = {s: lg.argmax(dim=-1) for s, lg in problem.logits.items()}
        return RoutingDecision(weights=weights, choice=choice)
