"""``ContextLearner``: a meta-learner that adapts by reading the support set, not by gradient steps.

It implements the :class:`~metacompose.algorithms.Learner` protocol around a *predictor*, a module
``predictor(support_x, support_feat, query_x) -> (T, Q, out)`` (the in-context transformer of
:mod:`metacompose.algorithms.incontext`, the CNP of :mod:`metacompose.algorithms.cnp`). Its
"adapted state" is the support set itself, so ``adapt`` returns it and ``query_loss`` predicts from
it. There are no adaptation steps: ``evaluate`` returns one row (the metric given the support set),
and the number of shots replaces the steps axis (:func:`metacompose.evaluate.evaluate_shots`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol, get_args

import torch
import torch.nn.functional as F
from torch import nn

from metacompose.algorithms.inner_loop import Params
from metacompose.algorithms.learner import MetaStep, TaskExport
from metacompose.graph import ModuleGraph
from metacompose.tasks.base import TaskBatch, derive_seed

ContextLoss = Literal["mse", "gaussian", "cross_entropy"]
Likelihood = Literal["mse", "gaussian"]  # of regression targets (classification: cross_entropy)
CONTEXT_LOSSES: tuple[str, ...] = get_args(ContextLoss)
MIN_STD = 1e-3  # Gaussian likelihood: smallest predicted standard deviation
NLL_BETA = 0.5  # beta-NLL's beta the shipped Gaussian configs use (Seitzer et al. 2022's choice)


class Predictor(Protocol):
    """Predicts every query of every task from its support set, in one batched call."""

    encoder: ModuleGraph

    def __call__(
        self, support_x: torch.Tensor, support_feat: torch.Tensor, query_x: torch.Tensor
    ) -> torch.Tensor:
        """``(T, K, *in)``, ``(T, K, label_dim)``, ``(T, Q, *in)`` -> ``(T, Q, out)``."""
        ...


def per_task_loss(
    pred: torch.Tensor, y: torch.Tensor, loss: str, *, metric: bool, nll_beta: float = 0.0
) -> torch.Tensor:
    """``(T,)`` loss (or metric: MSE of the mean, accuracy) of predictions ``(T, Q, out)``.

    ``nll_beta`` (Gaussian only): each point's negative log-likelihood is weighted by its
    predicted variance to the power ``nll_beta``, taken as a constant (beta-NLL, Seitzer et al.
    2022). At 0 this is the plain NLL, whose gradient on the mean is divided by the variance, so a
    model can settle on a large variance and stop fitting the mean; at 1 the mean's gradient is
    the squared error's.
    """
    if loss == "cross_entropy":
        if metric:
            return (pred.argmax(-1) == y).to(pred.dtype).mean(1)
        return (
            F.cross_entropy(pred.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
        )
    mean = pred[..., : y.shape[-1]]
    if loss == "mse" or metric:
        return ((mean - y) ** 2).flatten(1).mean(1)
    std = F.softplus(pred[..., y.shape[-1] :]) + MIN_STD
    nll = torch.log(std) + 0.5 * ((y - mean) / std) ** 2
    if nll_beta:
        nll = nll * std.detach() ** (2 * nll_beta)
    return nll.flatten(1).mean(1)


class ContextLearner(nn.Module):
    """Meta-trains a predictor that reads the support set (in-context learning, neural processes).

    Args:
        predictor: see :class:`Predictor`; its ``encoder`` graph is this learner's ``graph``.
        loss: ``"mse"`` or ``"gaussian"`` (regression; Gaussian: predicted mean and variance, MSE of
            the mean is the metric) or ``"cross_entropy"`` (classification; labels enter one-hot).
        n_classes: classes per task (classification only).
        min_shots: meta-training draws the support size of each meta-batch uniformly from
            ``min_shots..K`` (the first K' support examples), so one model serves every K up to
            the training K; ``None``: always K.
        nll_beta: Gaussian loss only: the beta of beta-NLL in ``[0, 1]`` (see
            :func:`per_task_loss`; 0: the plain NLL).
    """

    eval_inner_steps = 0  # no adaptation steps: the support set is read in one pass

    def __init__(
        self,
        *,
        predictor: nn.Module,
        loss: ContextLoss = "mse",
        n_classes: int | None = None,
        min_shots: int | None = None,
        nll_beta: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= nll_beta <= 1.0:
            raise ValueError(f"nll_beta must be in [0, 1], got {nll_beta}")
        if loss not in CONTEXT_LOSSES:
            raise ValueError(f"unknown loss {loss!r}; known: {CONTEXT_LOSSES}")
        if (loss == "cross_entropy") != (n_classes is not None):
            raise ValueError("n_classes is needed by (and only by) cross_entropy")
        if min_shots is not None and min_shots < 1:
            raise ValueError(f"min_shots must be >= 1, got {min_shots}")
        self.predictor = predictor
        self.loss = loss
        self.n_classes = n_classes
        self.min_shots = min_shots
        self.nll_beta = nll_beta

    @property
    def graph(self) -> ModuleGraph:
        """The input encoder (what a checkpoint stores as the model structure)."""
        return self.predictor.encoder

    def label_features(self, y: torch.Tensor) -> torch.Tensor:
        """Support targets as token inputs: ``(T, K, D)`` values or ``(T, K, N)`` one-hot labels."""
        if self.loss == "cross_entropy":
            return F.one_hot(y, self.n_classes).to(torch.get_default_dtype())
        return y

    def predict(self, support_x, support_y, query_x) -> torch.Tensor:
        """``(T, Q, out)``: predictions (Gaussian: mean then raw scale; classes: logits)."""
        feat = self.label_features(support_y).to(support_x.dtype)
        return self.predictor(support_x, feat, query_x)

    # ------------------------------------------------------------------------- Learner protocol
    def meta_step(self, batch: TaskBatch, *, step: int = 0) -> MetaStep:
        """Mean query loss given a support set of K' examples (K' drawn from ``step``'s seed)."""
        k = batch.support_x.shape[1]
        if self.min_shots is not None and self.min_shots < k:
            g = torch.Generator().manual_seed(derive_seed(step, "context-shots") % 2**63)
            k = int(torch.randint(self.min_shots, k + 1, (1,), generator=g))
        fast, frozen = self.adapt(batch.support_x[:, :k], batch.support_y[:, :k])
        losses = self.query_loss(fast, frozen, batch.query_x, batch.query_y)
        return MetaStep(objective=losses.mean(), query_loss=losses)

    def adapt(self, x, y, *, steps=None, first_order=None, on_step=None) -> tuple[Params, Params]:
        """The adapted state is the support set: ``({"support_x": x, "support_y": y}, {})``."""
        return {"support_x": x, "support_y": y}, {}

    def query_loss(self, fast: Params, frozen: Params, x, y, *, metric: bool = False):
        """``(T,)`` per-task query loss (or metric) given the support sets in ``fast``."""
        pred = self.predict(fast["support_x"], fast["support_y"], x)
        return per_task_loss(pred, y, self.loss, metric=metric, nll_beta=self.nll_beta)

    @torch.no_grad()
    def evaluate(self, batch: TaskBatch, *, steps: int | None = None) -> torch.Tensor:
        """``(1, T)`` query metric given each task's support set (``steps`` does not apply)."""
        fast, frozen = self.adapt(batch.support_x, batch.support_y)
        return self.query_loss(fast, frozen, batch.query_x, batch.query_y, metric=True)[None]

    @torch.no_grad()
    def predict_queries(self, batch: TaskBatch, *, steps: int = 0) -> torch.Tensor:
        """``(T, Q, out)``: the predicted mean (regression) or logits given each support set
        (``steps`` does not apply)."""
        pred = self.predict(batch.support_x, batch.support_y, batch.query_x)
        return pred if self.loss == "cross_entropy" else pred[..., : batch.query_y.shape[-1]]

    def export_tasks(self, batch: TaskBatch, *, steps: int | None = None) -> list[TaskExport]:
        raise ValueError(
            f"{type(self.predictor).__name__} adapts by reading the support set: it has no "
            "adapted weights to export or verify"
        )


def context_learner(
    *,
    predictor: Callable[..., nn.Module],
    encoder: ModuleGraph,
    targets: int,
    classification: bool,
    likelihood: Likelihood,
    min_shots: int | None,
    nll_beta: float | None = None,
    **predictor_args: Any,
) -> ContextLearner:
    """A :class:`ContextLearner` around ``predictor(encoder=, label_dim=, out_dim=, **args)``.

    Args:
        targets: regression target width D, or the number of classes N (labels enter one-hot).
        classification: N-way classification (cross-entropy); else ``likelihood``: ``"mse"`` or
            ``"gaussian"`` (the predictor then outputs a mean and a variance per target).
        nll_beta: see :class:`ContextLearner`; ``None``: 0 (the plain NLL). Set only with the
            Gaussian likelihood.
    """
    if likelihood not in get_args(Likelihood):
        raise ValueError(f"likelihood={likelihood!r}: expected one of {get_args(Likelihood)}")
    loss = "cross_entropy" if classification else likelihood
    if nll_beta is not None and loss != "gaussian":
        raise ValueError(f"nll_beta={nll_beta} applies only to likelihood: gaussian (loss: {loss})")
    out_dim = 2 * targets if loss == "gaussian" else targets
    net = predictor(encoder=encoder, label_dim=targets, out_dim=out_dim, **predictor_args)
    return ContextLearner(
        predictor=net,
        loss=loss,
        n_classes=targets if classification else None,
        min_shots=min_shots,
        nll_beta=0.0 if nll_beta is None else nll_beta,
    )
