"""Prototypical networks (Snell et al. 2017): classify a query by its squared distance to class means."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from metacompose.algorithms.meta_learner import MetaStep
from metacompose.tasks.base import TaskBatch


def prototype_logits(
    support: torch.Tensor, labels: torch.Tensor, query: torch.Tensor, ways: int
) -> torch.Tensor:
    """Negative squared Euclidean distances from each query embedding to each class prototype.

    Args:
        support: ``(T, K, E)`` support embeddings.
        labels: ``(T, K)`` int64 labels in ``0..ways-1``.
        query: ``(T, Q, E)`` query embeddings.

    Returns:
        ``(T, Q, ways)`` logits; a prototype is the mean embedding of its class's support examples.
    """
    onehot = F.one_hot(labels, ways).to(support.dtype)  # (T, K, N)
    counts = onehot.sum(1).clamp_min(1.0)  # (T, N)
    protos = onehot.transpose(1, 2) @ support / counts[..., None]  # (T, N, E)
    diff = query[:, :, None, :] - protos[:, None, :, :]
    return -(diff**2).sum(-1)


class ProtoNet(nn.Module):
    """An embedding network meta-trained so that class means classify new classes.

    Each task's support and query images are embedded separately, per task (``vmap``), so a
    batch-statistics norm sees one task's support (or query) set at a time, as in MAML.

    Args:
        encoder: ``(B, *in_shape) -> (B, E)``, e.g. the ``body`` node of ``conv_graph``.
        ways: classes per task (N).
    """

    loss = "cross_entropy"
    eval_inner_steps = 0

    def __init__(self, *, encoder: nn.Module, ways: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.ways = ways

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(T, B, *in_shape) -> (T, B, E)``, one task at a time."""
        params = dict(self.encoder.named_parameters())
        return vmap(lambda xt: functional_call(self.encoder, params, (xt,)))(x)

    def logits(self, batch: TaskBatch) -> torch.Tensor:
        """``(T, Q, N)`` query logits."""
        return prototype_logits(
            self.embed(batch.support_x), batch.support_y, self.embed(batch.query_x), self.ways
        )

    def meta_step(self, batch: TaskBatch, *, step: int = 0) -> MetaStep:
        """Mean query cross-entropy of the prototype classifier (``step`` unused: no schedule)."""
        logits = self.logits(batch)
        t, q, n = logits.shape
        losses = F.cross_entropy(
            logits.reshape(t * q, n), batch.query_y.reshape(t * q), reduction="none"
        ).view(t, q)
        per_task = losses.mean(1)
        return MetaStep(objective=per_task.mean(), query_loss=per_task)

    @torch.no_grad()
    def evaluate(self, batch: TaskBatch, *, steps: int | None = None) -> torch.Tensor:
        """Query accuracy ``(S + 1, T)``; no inner steps, so every row is the same."""
        steps = 0 if steps is None else steps
        acc = (self.logits(batch).argmax(-1) == batch.query_y).float().mean(1)
        return acc.expand(steps + 1, -1).clone()
