"""Uniform routing: every candidate weighs 1/C for every task (the no-composition baseline)."""

from __future__ import annotations

import torch

from metacompose.router.policies.base import RoutingDecision, RoutingProblem


class UniformRouting:
    """``1/C`` per candidate, task-independent; reads no logits (the router has no heads)."""

    label = "hard-uniform"

    def decide(self, problem: RoutingProblem) -> RoutingDecision:
        t, like = problem.num_tasks, problem.like
        return RoutingDecision(
            weights={s: torch.full((t, n), 1.0 / n).to(like) for s, n in problem.sizes.items()}
        )
