"""The LightningModule of meta-training: one ``MetaLearner`` and an optimizer factory."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch

from composer.algorithms import MetaLearner
from composer.tasks.base import TaskBatch

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


class MetaLearningModule(L.LightningModule):
    """Meta-trains a :class:`MetaLearner`.

    A training step adapts to every task of the meta-batch (vectorised) and returns the
    meta-objective; Lightning (and DDP, when configured) averages its gradient. Validation adapts
    with ``eval_inner_steps`` and logs the query metric before and after adaptation.

    Args:
        learner: the meta-learner (graph + algorithm).
        optimizer: builds the outer optimizer from the parameters.
        metric: ``"mse"`` or ``"accuracy"``: the name used in logged metrics.
        extra_checkpoint: plain data stored in every checkpoint under ``"metacompose"`` (the
            resolved config and the graph's JSON), so a checkpoint alone rebuilds the model.
    """

    def __init__(
        self,
        *,
        learner: MetaLearner,
        optimizer: OptimizerFactory,
        metric: str = "mse",
        extra_checkpoint: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.learner = learner
        self.optimizer_factory = optimizer
        self.metric = metric
        self.extra_checkpoint = dict(extra_checkpoint or {})

    def training_step(self, batch: TaskBatch, batch_idx: int) -> torch.Tensor:
        out = self.learner.meta_step(batch)
        # self.log costs ~1 ms on CPU, as much as a sinusoid meta-step: only log when it is written.
        if self.trainer.global_step % self.trainer.log_every_n_steps == 0:
            self.log("train/query_loss", out.query_loss.detach().mean(), prog_bar=True)
        return out.objective

    def validation_step(self, batch: TaskBatch, batch_idx: int) -> None:
        with torch.enable_grad():
            curve = self.learner.evaluate(batch)
        n = batch.num_tasks
        self.log(f"val/query_{self.metric}_step0", curve[0].mean(), batch_size=n, sync_dist=True)
        self.log(
            f"val/query_{self.metric}",
            curve[-1].mean(),
            batch_size=n,
            sync_dist=True,
            prog_bar=True,
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["metacompose"] = self.extra_checkpoint
