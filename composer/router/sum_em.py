"""Hard EM for the sum structure ``y = a f(x; p) + b g(x; q) + c`` with closed-form amplitudes.

Two banks of candidates (:class:`~metacompose.router.candidate_bank.ContextBank`), one per slot.
Per task and per (f-candidate, g-candidate) pair, the contexts ``p``, ``q`` are chosen from a grid
and the amplitudes ``(a, b, c)`` are solved in closed form on the support set
(:mod:`metacompose.router.least_squares`), all pairs and contexts in one vectorised batch:

- **E-step** (meta-training, no descriptor): the task takes the pair whose support fit predicts
  its query set best (both sets are meta-training data).
- **M-step**: the query MSE of the chosen pair only, amplitudes solved on the support set
  (differentiable), contexts fixed at the chosen grid values.
- **Evaluation**: the pair (and contexts) with the lowest *support* MSE; the query set is never
  read.

``routing="descriptor"`` trains on the family's one-hot (f, g) descriptor instead of the E-step
(the upper bound with the same candidates). A measured pilot, not a product learner yet
(docs/router.md, "Sum structure: closed-form EM").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from metacompose.router.candidate_bank import ContextBank
from metacompose.router.least_squares import (
    best_contexts,
    fit_one_pair,
    pair_least_squares,
    predict,
)
from metacompose.tasks.base import TaskBatch

Tensor = torch.Tensor
SumRouting = Literal["em", "descriptor"]


@dataclass
class SumChoice:
    """One routing per task, each ``(T,)``: candidates ``f``, ``g`` and their grid contexts."""

    f: Tensor
    g: Tensor
    p: Tensor
    q: Tensor


class SumEMLearner(nn.Module):
    """Two context banks, routed per task by hard EM (or by the descriptor) over every pair.

    Args:
        f_bank: slot-f candidates.
        g_bank: slot-g candidates.
        contexts: grid size G of each candidate's context in ``[-1, 1]``.
        ridge: ridge ``lambda`` of the amplitude solve.
        routing: ``"em"`` (from data) or ``"descriptor"`` (the family's one-hot (f, g), f's
            C entries first).
    """

    def __init__(
        self,
        *,
        f_bank: ContextBank,
        g_bank: ContextBank,
        contexts: int,
        ridge: float,
        routing: SumRouting = "em",
    ) -> None:
        super().__init__()
        if contexts < 1 or ridge < 0 or routing not in ("em", "descriptor"):
            raise ValueError(
                f"contexts >= 1, ridge >= 0, routing em|descriptor; got {contexts}, {ridge}, "
                f"{routing!r}"
            )
        self.f_bank, self.g_bank = f_bank, g_bank
        self.register_buffer("grid", torch.linspace(-1.0, 1.0, contexts))
        self.ridge, self.routing = float(ridge), routing

    def _all_fits(self, x: Tensor, sy: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``x`` ``(T, N)`` (support first, ``sy.shape[1]`` of them) -> per pair ``(C, D, T)``:
        contexts kf, kg, support MSE, and ``(f, g)`` outputs at them ``(C, D, T, N)``, weights."""
        n, gsz = sy.shape[1], len(self.grid)
        hf = self.f_bank.on_grid(x, self.grid).flatten(0, 1)  # (C*G, T, N)
        hg = self.g_bank.on_grid(x, self.grid).flatten(0, 1)
        fits = pair_least_squares(hf[..., :n], hg[..., :n], sy, ridge=self.ridge)
        kf, kg, loss = best_contexts(fits.loss, gsz)
        c, d, t = kf.shape
        ci = torch.arange(c).view(-1, 1, 1) * gsz + kf
        dj = torch.arange(d).view(1, -1, 1) * gsz + kg
        tt = torch.arange(t).expand(c, d, t)
        return kf, kg, loss, fits.weights[ci, dj, tt], torch.stack([hf[ci, tt], hg[dj, tt]])

    @torch.no_grad()
    def pair_losses(self, batch: TaskBatch) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(query MSE, support MSE, kf, kg)``, each ``(C, D, T)``: every pair fitted on the
        support set at its best contexts."""
        sx, sy = batch.support_x[..., 0], batch.support_y[..., 0]
        x = torch.cat([sx, batch.query_x[..., 0]], dim=1)
        kf, kg, support, w, h = self._all_fits(x, sy)
        n = sy.shape[1]
        pred = predict(w, h[0, ..., n:], h[1, ..., n:])
        query = ((pred - batch.query_y[..., 0]) ** 2).mean(-1)
        return query, support, kf, kg

    def _pick(self, score: Tensor, kf: Tensor, kg: Tensor) -> SumChoice:
        c, d, t = score.shape
        flat = score.reshape(c * d, t).argmin(dim=0)
        f, g = flat // d, flat % d
        ar = torch.arange(t)
        return SumChoice(f=f, g=g, p=self.grid[kf[f, g, ar]], q=self.grid[kg[f, g, ar]])

    def choose(self, batch: TaskBatch, *, training: bool) -> SumChoice:
        """Meta-training: the E-step's pair (lowest query MSE) or the descriptor's; evaluation:
        the lowest support MSE."""
        query, support, kf, kg = self.pair_losses(batch)
        if not training:
            return self._pick(support, kf, kg)
        if self.routing == "em":
            return self._pick(query, kf, kg)
        c = self.f_bank.candidates
        f, g = batch.descriptor[:, :c].argmax(-1), batch.descriptor[:, c:].argmax(-1)
        one = torch.full_like(support, float("inf"))
        one[f, g, torch.arange(len(f))] = 0.0
        return self._pick(one, kf, kg)

    def query_mse(self, batch: TaskBatch, choice: SumChoice) -> Tensor:
        """``(T,)`` query MSE of the chosen pairs, amplitudes solved on the support set
        (differentiable w.r.t. both banks)."""
        n = batch.support_x.shape[1]
        x = torch.cat([batch.support_x, batch.query_x], dim=1)[..., 0]
        hf = self.f_bank.chosen(choice.f, choice.p, x)
        hg = self.g_bank.chosen(choice.g, choice.q, x)
        w = fit_one_pair(hf[:, :n], hg[:, :n], batch.support_y[..., 0], ridge=self.ridge)
        pred = predict(w, hf[:, n:], hg[:, n:])
        return ((pred - batch.query_y[..., 0]) ** 2).mean(-1)

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """The M-step objective of one meta-batch."""
        return self.query_mse(batch, self.choose(batch, training=True)).mean()


def build_sum_em(
    *, candidates: int, hidden: int, contexts: int, ridge: float, routing: SumRouting, seed: int
) -> SumEMLearner:
    """A :class:`SumEMLearner` with two banks of ``candidates`` MLPs, initialised from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    banks = [
        ContextBank(candidates=candidates, hidden=hidden, context_scale=2.0, generator=g)
        for _ in range(2)
    ]
    return SumEMLearner(
        f_bank=banks[0], g_bank=banks[1], contexts=contexts, ridge=ridge, routing=routing
    )


def train_sum_em(
    learner: SumEMLearner, family, *, steps: int, meta_batch: int, lr: float, seed: int
) -> list[float]:
    """Adam on :meth:`SumEMLearner.meta_loss` over ``steps`` meta-batches of the family's
    ``train`` split (K = 10 support and 10 query points); returns the loss of every step."""
    opt = torch.optim.Adam(learner.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        batch = family.sample(meta_batch, shots=10, query=10, generator=g, split="train")
        loss = learner.meta_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses
