"""A balanced E-step for the annealed sum: each meta-batch's posterior over candidate pairs,
rescaled so that every candidate of a bank takes an equal share of the batch (Sinkhorn's
iterative proportional fitting in the log domain; the equipartition of SwAV-style clustering).

A candidate that claims two primitives' tasks must hand half of them to the others, which then
learn from them: a prior of equal use that works against merges while annealing, faded out as the
temperature falls (:func:`balanced_soft_min`'s ``weight``)."""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def balanced_posterior(logits: Tensor, *, rounds: int = 100) -> Tensor:
    """``(T, C, D)``: per task a distribution over the ``C x D`` pairs, near ``softmax(logits)``,
    whose sums over the batch give every f-candidate ``T / C`` and every g-candidate ``T / D``
    (approximately, after ``rounds`` rounds); float64."""
    t, c, d = logits.shape
    lq = logits.double().flatten(1).log_softmax(1).view(t, c, d)
    for _ in range(rounds):
        lq = lq + (math.log(t / c) - lq.logsumexp((0, 2), keepdim=True))
        lq = lq + (math.log(t / d) - lq.logsumexp((0, 1), keepdim=True))
        lq = lq - lq.logsumexp((1, 2), keepdim=True)
    return lq.exp()


def balanced_soft_min(
    mse: Tensor, *, f_count: int, g_count: int, contexts: int, tau: float, weight: float
) -> Tensor:
    """``(T,)``: each task's soft minimum over its fits, with the posterior over pairs mixed
    ``weight`` of the way to :func:`balanced_posterior`.

    ``mse`` ``(T, E)``: every pair at every context pair of the grid (``(C G) x (D G)``,
    row-major), then optionally one refined fit per pair (``C x D``). Within a pair the soft
    minimum is as before, ``-tau logsumexp(-mse / tau)``; across pairs the tasks' (detached)
    posterior weighs them. At ``weight`` 0 the gradient is the plain soft minimum's."""
    t, (c, d, g) = mse.shape[0], (f_count, g_count, contexts)
    cells = c * g * d * g
    grid = mse[:, :cells].view(t, c, g, d, g).permute(0, 1, 3, 2, 4).flatten(3)
    entries = torch.cat([grid, mse[:, cells:].view(t, c, d, -1)], 3)
    inner = -tau * torch.logsumexp(-entries / tau, 3)  # (T, C, D)
    logits = (-inner / tau).detach()
    q = logits.double().flatten(1).softmax(1).view(t, c, d)
    q = (1 - weight) * q + weight * balanced_posterior(logits)
    return (q.to(inner.dtype) * inner).sum((1, 2))
