"""Routing from data by hard EM over joint choices: the data-routed learner's training policy.

E-step, per meta-train task: the loss on its *query* set of every joint choice after adaptation on
its *support* set (both are meta-training data; no descriptor is read), and the task takes the
best choice (or one sampled with probability ``softmax(-loss / (mean loss x tau))`` while ``tau``
anneals). For the first ``capacity_steps`` meta-iterations the choice is a *balanced* assignment:
no candidate may take more than ``ceil(capacity x T / C)`` of the T tasks of a meta-batch, so that
one generalist candidate cannot win every task before the others specialise. M-step: the learner
trains the modules only through the chosen choice (the decision is one-hot). The router (the set
encoder over the support set) learns the E-step's choice by cross-entropy, so that evaluation need
not enumerate every choice (:class:`~metacompose.router.policies.top_k.TopKSupportRouting`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from metacompose.router.policies.base import RoutingDecision, RoutingProblem, one_hot_decision
from metacompose.router.policies.search import annealed_pick
from metacompose.router.relaxed import TemperatureSchedule
from metacompose.router.search import route_combinations


class EMRouting:
    """Hard-EM routing of every meta-training batch, and the router's cross-entropy to it.

    Args:
        weight: weight of the router's cross-entropy to the E-step's choice.
        capacity: > 0: balanced assignment, each candidate of a slot takes at most
            ``ceil(capacity * T / C)`` tasks of a meta-batch; 0: no limit.
        capacity_steps: meta-iterations with the balanced assignment.
        anneal: after them, sample each task's choice at temperature ``anneal(step)``
            (:func:`annealed_pick`); ``None``: the lowest loss.
        prior_weight: the E-step scores a choice by its loss relative to the task's mean loss
            minus ``prior_weight`` x the router's log-probability of it (the router as a learned
            prior over choices, as in modular EM): tasks that look alike are routed alike while
            the losses cannot tell choices apart yet. 0: by the loss alone.
    """

    label = "hard-em"

    def __init__(
        self,
        *,
        weight: float,
        capacity: float = 0.0,
        capacity_steps: int = 0,
        anneal: TemperatureSchedule | None = None,
        prior_weight: float = 0.0,
    ) -> None:
        self.weight = float(weight)
        self.capacity = float(capacity)
        self.capacity_steps = int(capacity_steps)
        self.anneal = anneal
        self.prior_weight = float(prior_weight)

    def decide(self, problem: RoutingProblem) -> RoutingDecision:
        combos = route_combinations(problem.sizes)
        losses = problem.joint_losses()  # (K, T)
        if self.prior_weight > 0:
            losses = posterior_scores(losses, problem.logits, combos, self.prior_weight)
        if self.capacity > 0 and problem.step < self.capacity_steps:
            picked = balanced_pick(losses, combos, list(problem.sizes.values()), self.capacity)
        elif self.anneal is not None:
            picked = annealed_pick(losses, self.anneal(problem.step), problem.generator)
        else:
            picked = losses.argmin(dim=0)
        choice = {s: combos[picked, i] for i, s in enumerate(problem.sizes)}
        decision = one_hot_decision(choice, problem.sizes, problem.like)
        decision.penalties.append(self.weight * router_cross_entropy(problem.logits, choice))
        return decision


def posterior_scores(
    losses: torch.Tensor, logits: dict[str, torch.Tensor], combos: torch.Tensor, weight: float
) -> torch.Tensor:
    """``(K, T)``: each loss over its task's mean loss, minus ``weight`` x the router's
    log-probability of the joint choice (slot logits ``(T, C)`` in slot order; no gradient),
    shifted to be positive (the annealed and balanced picks divide by the scores)."""
    rel = losses / losses.mean(dim=0, keepdim=True).clamp_min(1e-12)
    logp = sum(
        torch.log_softmax(lg.detach(), dim=-1)[:, combos[:, i]]
        for i, lg in enumerate(logits.values())
    ).T  # (K, T)
    score = rel - weight * logp
    return score - score.min(dim=0, keepdim=True).values + 1.0


def router_cross_entropy(
    logits: dict[str, torch.Tensor], choice: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Mean over routed slots of the cross-entropy of the slot's logits ``(T, C)`` to the chosen
    candidates ``(T,)``: minus the log-probability of the joint choice under the router (which
    factorises over slots), divided by the number of slots, averaged over tasks."""
    terms = [F.cross_entropy(logits[s], c) for s, c in choice.items()]
    return sum(terms) / len(terms)


def balanced_pick(
    losses: torch.Tensor, combos: torch.Tensor, sizes: list[int], capacity: float
) -> torch.Tensor:
    """Per task, a joint choice with each candidate used by at most ``ceil(capacity * T / C)``
    tasks: greedy in order of the loss relative to the task's best (so a task keeps its best
    choice unless candidates it needs are full). ``losses``: ``(K, T)``; ``combos``: ``(K, S)``.
    Returns ``(T,)`` row indices.

    Raises:
        ValueError: ``capacity * T / C`` rounds up to less than ``T / C`` tasks (infeasible).
    """
    t = losses.shape[1]
    caps = [math.ceil(capacity * t / c) for c in sizes]
    if any(cap * c < t for cap, c in zip(caps, sizes)):
        raise ValueError(f"capacity {capacity} cannot place {t} tasks on {sizes} candidates")
    rel = losses / losses.min(dim=0, keepdim=True).values.clamp_min(1e-12)
    used = [[0] * c for c in sizes]
    picked = [-1] * t
    for flat in rel.flatten().argsort(stable=True).tolist():
        row, task = divmod(flat, t)
        if picked[task] >= 0:
            continue
        cands = combos[row].tolist()
        if all(used[i][c] < caps[i] for i, c in enumerate(cands)):
            picked[task] = row
            for i, c in enumerate(cands):
                used[i][c] += 1
    return torch.tensor(picked, dtype=torch.int64)
