"""Relaxed discrete routing: Gumbel-softmax (straight-through), its temperature schedule, and the
load-balancing / entropy terms that keep routing from collapsing onto one candidate."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TemperatureSchedule:
    """Exponential annealing ``tau(s) = start * (end / start) ** min(s / steps, 1)``.

    Attributes:
        start: temperature at meta-iteration 0.
        end: temperature from ``steps`` on.
        steps: meta-iterations of the anneal (0: constant ``end``).
    """

    start: float = 1.0
    end: float = 0.3
    steps: int = 2000

    def __post_init__(self) -> None:
        if self.start <= 0 or self.end <= 0 or self.steps < 0:
            raise ValueError(
                f"temperature schedule needs start, end > 0 and steps >= 0, got {self}"
            )

    def __call__(self, step: int) -> float:
        if self.steps == 0:
            return self.end
        frac = min(max(step, 0) / self.steps, 1.0)
        return self.start * (self.end / self.start) ** frac


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Standard Gumbel samples ``-log(-log U)`` drawn with an explicit generator (on CPU)."""
    u = torch.rand(shape, generator=generator).clamp_(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def relaxed_route(
    logits: torch.Tensor,
    *,
    tau: float,
    noise: torch.Tensor | None,
    straight_through: bool,
) -> torch.Tensor:
    """Routing weights ``(T, C)`` from logits ``(T, C)``.

    ``softmax((logits + noise) / tau)``; with ``straight_through`` the forward value is the one-hot
    of its argmax while the gradient is the soft one's (Jang et al. 2017; Bengio et al. 2013).
    """
    z = logits if noise is None else logits + noise.to(logits)
    soft = F.softmax(z / tau, dim=-1)
    if not straight_through:
        return soft
    hard = F.one_hot(soft.argmax(dim=-1), soft.shape[-1]).to(soft)
    return hard - soft.detach() + soft


def hard_route(logits: torch.Tensor) -> torch.Tensor:
    """One-hot of the argmax: ``(T, C)`` (routing at evaluation)."""
    return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits)


def balance_loss(probs: torch.Tensor) -> torch.Tensor:
    """``log C - H(mean_t probs)``: 0 when the batch uses every candidate equally, ``log C`` when
    every task picks the same one. ``probs``: ``(T, C)``."""
    mean = probs.mean(dim=0)
    return math.log(probs.shape[-1]) + (mean * torch.log(mean.clamp_min(1e-12))).sum()


def mean_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean per-task routing entropy ``mean_t H(probs_t)`` (penalise it for confident routing)."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=-1).mean()
