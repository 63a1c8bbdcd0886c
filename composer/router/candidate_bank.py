"""``ContextBank``: C small MLPs of an input and a scalar per-task context, ``h_c(x, p)``, with
batched weights, so that every candidate can be evaluated at every context of a grid at once.

Each primitive of the compositional family is a one-parameter family of curves (a frequency, a
shift, a rate set by ``p``); a candidate of the bank learns one such family. The context is not
adapted by gradient steps but chosen from a fixed grid per task (as the oracle chooses ``p``), which
keeps a task's free parameters few: a wrong candidate cannot bend to fit the support set.
"""

from __future__ import annotations

import math

import torch
from torch import nn

Tensor = torch.Tensor


class ContextBank(nn.Module):
    """``candidates`` tanh MLPs ``[x, scale * p] -> hidden -> hidden -> 1``.

    Args:
        candidates: C.
        hidden: width of both hidden layers.
        context_scale: the context enters multiplied by this factor.
        generator: initialisation randomness.
    """

    def __init__(
        self, *, candidates: int, hidden: int, context_scale: float, generator: torch.Generator
    ) -> None:
        super().__init__()
        c, h, g = candidates, hidden, generator
        self.w1 = nn.Parameter(torch.randn(c, 2, h, generator=g))
        self.b1 = nn.Parameter(torch.randn(c, h, generator=g))
        self.w2 = nn.Parameter(torch.randn(c, h, h, generator=g) / math.sqrt(h))
        self.b2 = nn.Parameter(torch.zeros(c, h))
        self.w3 = nn.Parameter(torch.randn(c, h, generator=g) / math.sqrt(h))
        self.b3 = nn.Parameter(torch.zeros(c))
        self.context_scale = float(context_scale)

    @property
    def candidates(self) -> int:
        return self.w1.shape[0]

    def on_grid(self, x: Tensor, grid: Tensor) -> Tensor:
        """``x`` ``(T, N)``, ``grid`` ``(G,)`` -> ``(C, G, T, N)``: every candidate at every
        context."""
        w1 = self.w1[:, None, None, None]  # (C, 1, 1, 1, 2, H)
        u = (
            x[None, None, ..., None] * w1[..., 0, :]
            + self.context_scale * grid.view(1, -1, 1, 1, 1) * w1[..., 1, :]
            + self.b1[:, None, None, None]
        )
        h = torch.tanh(u)
        h = torch.tanh(torch.einsum("cgtnh,chk->cgtnk", h, self.w2) + self.b2[:, None, None, None])
        return torch.einsum("cgtnh,ch->cgtn", h, self.w3) + self.b3.view(-1, 1, 1, 1)

    def chosen(self, candidate: Tensor, context: Tensor, x: Tensor) -> Tensor:
        """``candidate`` ``(T,)`` ids, ``context`` ``(T,)`` values, ``x`` ``(T, N)`` -> ``(T, N)``:
        each task's own candidate at its own context."""
        w1 = self.w1[candidate]  # (T, 2, H)
        u = (
            x[..., None] * w1[:, None, 0]
            + self.context_scale * context.view(-1, 1, 1) * w1[:, None, 1]
            + self.b1[candidate][:, None]
        )
        h = torch.tanh(u)
        h = torch.tanh(h @ self.w2[candidate] + self.b2[candidate][:, None])
        return torch.einsum("tnh,th->tn", h, self.w3[candidate]) + self.b3[candidate][:, None]
