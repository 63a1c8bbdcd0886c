"""The routing-policy protocol: how a routed learner turns a meta-batch into routing weights.

A policy sees a :class:`RoutingProblem` (the router's logits, the slots' sizes, the meta-iteration,
the noise generator, and the loss of every joint choice, computed only if asked for) and returns a
:class:`RoutingDecision`. The learner picks one policy for meta-training and one for evaluation;
the config chooses them (:mod:`metacompose.router.build`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F


@dataclass
class RoutingProblem:
    """What a policy may read to route a meta-batch of T tasks.

    Attributes:
        logits: routed slot -> ``(T, C)`` router logits (empty if the router has no heads).
        sizes: routed slot -> number of candidates C, in the pool's slot order.
        num_tasks: T.
        like: a tensor whose dtype and device the weights take.
        step: the meta-iteration (0-based; schedules read it; 0 at evaluation).
        generator: the learner's Gumbel-noise generator (CPU).
        joint_losses: ``() -> (K, T)`` loss of every joint choice (rows as
            :func:`metacompose.router.search.route_combinations` of ``sizes``); what "loss" means
            (query loss in training, support loss at evaluation) is the learner's.
        choice_losses: ``(picks) -> (k, T)``: the same loss of only the joint choices
            ``picks`` ``(T, k)`` (rows of ``route_combinations``) of each task.
    """

    logits: dict[str, torch.Tensor]
    sizes: dict[str, int]
    num_tasks: int
    like: torch.Tensor
    step: int
    generator: torch.Generator
    joint_losses: Callable[[], torch.Tensor]
    choice_losses: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass
class RoutingDecision:
    """A policy's answer.

    Attributes:
        weights: routed slot -> ``(T, C)`` routing weights (one-hot when hard).
        choice: routed slot -> ``(T,)`` chosen candidates (empty when routing is not a choice).
        penalties: terms added, in order, to the meta-objective (routing health, or the
            router's cross-entropy to a searched choice).
    """

    weights: dict[str, torch.Tensor]
    choice: dict[str, torch.Tensor] = field(default_factory=dict)
    penalties: list[torch.Tensor] = field(default_factory=list)


class RoutingPolicy(Protocol):
    """Routes a meta-batch of tasks; ``label`` says how, in the graphs ``inspect`` exports."""

    label: str

    def decide(self, problem: RoutingProblem) -> RoutingDecision: ...


def one_hot_decision(
    choice: dict[str, torch.Tensor], sizes: dict[str, int], like: torch.Tensor
) -> RoutingDecision:
    """Hard routing weights ``(T, C)`` of a choice (slot -> ``(T,)`` candidate ids)."""
    weights = {s: F.one_hot(c, sizes[s]).to(like) for s, c in choice.items()}
    return RoutingDecision(weights=weights, choice=choice)
