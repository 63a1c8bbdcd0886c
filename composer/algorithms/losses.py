"""Per-task losses and metrics (one task: predictions ``(N, ...)`` against targets)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("mse", "cross_entropy")


def task_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Scalar loss of one task: ``"mse"`` on ``(N, D)`` or ``"cross_entropy"`` on logits ``(N, C)``."""
    if kind == "mse":
        return ((pred - target) ** 2).mean()
    if kind == "cross_entropy":
        return F.cross_entropy(pred, target)
    raise ValueError(f"unknown loss {kind!r}; known: {LOSSES}")


def task_metric(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """The reported metric: MSE for regression, accuracy for classification."""
    if kind == "mse":
        return ((pred - target) ** 2).mean()
    return (pred.argmax(dim=-1) == target).to(pred.dtype).mean()


def metric_name(loss: str) -> str:
    return "mse" if loss == "mse" else "accuracy"
