"""The LightningModule of meta-training: one ``Learner`` and an optimizer factory."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch

from metacompose.algorithms import Learner
from metacompose.tasks.base import TaskBatch
from metacompose.training.direct_step import lightning_path_needed, step_progress
from metacompose.training.guard import (
    BadInputError,
    BadTaskGuard,
    grads_finite,
    guarded_meta_step,
)
from metacompose.training.rng import capture_rng_state, restore_rng_state
from metacompose.training.steps_per_call import rebatch_counters

# Set every meta-step: plain values, kept out of ``nn.Module.__setattr__``'s checks.
_PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "_good", "_tasks"})

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


class MetaLearningModule(L.LightningModule):
    """Meta-trains a :class:`~metacompose.algorithms.Learner`.

    A training step hands the learner the meta-iteration (``trainer.global_step``: optimizer
    steps, so every accumulated micro-batch of one meta-iteration sees the same value and the
    learner's schedules run at the same pace with or without ``data.task_chunk_size``), adapts to every task of the (micro-)batch (vectorised) and returns the
    meta-objective; Lightning (and DDP, when configured) averages its gradient over ranks and
    accumulated micro-batches. Tasks with a NaN/Inf loss are dropped and the gradient rescaled to the
    mean over the good tasks of the whole meta-batch (all ranks); a meta-batch without good tasks,
    or with a non-finite meta-gradient, is skipped (see :mod:`metacompose.training.guard`).

    Every parameter takes part in every objective (with weight 0 where it is unused, e.g. the frozen
    nodes of Reptile with an adaptation scope), so DDP never meets an unused parameter.

    Optimization is manual (``training_step`` zeroes, back-propagates and steps itself) when one
    micro-batch is one meta-iteration: Lightning's automatic loop (closure, per-step hooks around
    backward) cost ~20% of a sinusoid meta-step. The numbers are those of the automatic loop: the
    gradient is rescaled or dropped by the guard, then clipped (``grad_clip``, by norm), then
    stepped. In a single-process fp32 run with no callback on the backward / optimizer-step hooks,
    the module calls ``backward`` and the optimizer itself rather than through Lightning's wrappers
    (:mod:`metacompose.training.direct_step`; the same numbers and counters, tested). With
    accumulated micro-batches (``chunks > 1``) Lightning's automatic loop is kept
    (its counters then label logs and checkpoints by meta-iteration).

    Validation calls ``learner.evaluate`` (``eval_inner_steps``, first order) and logs the query
    metric before (``_step0``) and after adaptation (and, for regression, ``val/query_loss``).

    Args:
        learner: the meta-learner.
        optimizer: builds the outer optimizer from the parameters (picklable for ``ddp_spawn``).
        metric: ``"mse"`` or ``"accuracy"``: the name used in logged metrics.
        extra_checkpoint: plain data stored in every checkpoint under ``"metacompose"`` (the
            resolved config and the graph's JSON), so a checkpoint alone rebuilds the model.
        max_bad_tasks: stop the run once more NaN/Inf tasks than this were dropped (``None``: never).
        grad_clip: clip the meta-gradient's total norm to this (``None``: no clipping).
        chunks: micro-batches per meta-iteration (``data.task_chunk_size``); the trainer must
            accumulate this many batches (``accumulate_grad_batches``) and clip (``gradient_clip_val``)
            itself when it is above 1.
        steps_per_call: meta-iterations per training batch (a list of that many ``TaskBatch``;
            :mod:`metacompose.training.steps_per_call`); logged rows then carry their
            meta-iteration as ``step``, since the trainer counts batches.
    """

    def __init__(
        self,
        *,
        learner: Learner,
        optimizer: OptimizerFactory,
        metric: str = "mse",
        extra_checkpoint: dict[str, Any] | None = None,
        max_bad_tasks: int | None = 1000,
        grad_clip: float | None = None,
        chunks: int = 1,
        steps_per_call: int = 1,
    ) -> None:
        super().__init__()
        if steps_per_call > 1 and chunks > 1:
            raise ValueError("steps_per_call > 1 needs one micro-batch per meta-iteration")
        self.automatic_optimization = chunks > 1
        self.steps_per_call = steps_per_call
        self.grad_clip = grad_clip
        self.learner = learner
        self.optimizer_factory = optimizer
        self.metric = metric
        self.extra_checkpoint = dict(extra_checkpoint or {})
        self.guard = BadTaskGuard(max_bad_tasks=max_bad_tasks)
        self._good = 0  # good tasks since the last optimizer step (this rank)
        self._tasks = 0
        self._trained: list[torch.nn.Parameter] | None = None  # the optimizer's parameters
        self._lightning_path: bool | None = None  # decided at each fit's first step (direct_step)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets ``_current_fx_name`` (a str or None) around every hook call, ~30 times a
        # meta-step; ``nn.Module.__setattr__``'s parameter/buffer/module checks cost ~0.1 ms of it.
        if name in _PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _log_now(self) -> bool:
        # self.log costs ~1 ms on CPU, as much as a sinusoid meta-step: only log when it is written.
        # Lightning writes at the end of the step when (steps done + 1) % log_every_n_steps == 0
        # (the row is labelled with the steps done before it). Logging in that same step keeps each
        # row's value from its own step, and a run stopped after any step resumes to the same log.
        every = self.trainer.log_every_n_steps * self.steps_per_call  # in meta-iterations
        return (self.trainer.global_step + 1) % every == 0

    def training_step(
        self, batch: TaskBatch | list[TaskBatch], batch_idx: int
    ) -> torch.Tensor | None:
        if isinstance(batch, list):  # steps_per_call meta-iterations, each its own optimizer step
            for one in batch:
                self._meta_iteration(one)
            return None
        return self._meta_iteration(batch)

    def on_fit_start(self) -> None:
        self._lightning_path = None  # another fit may have other callbacks

    def _meta_iteration(self, batch: TaskBatch) -> torch.Tensor | None:
        step = guarded_meta_step(self.learner, batch, step=self.trainer.global_step)
        self._good += step.good
        self._tasks += step.tasks
        if self._log_now():  # every rank logs at the same steps (sync_dist all-reduces)
            loss = step.query_loss.detach().mean() if step.good else step.objective.detach() * 0
            # prog_bar only with a bar: Lightning converts every prog_bar metric to a float on
            # every later batch, logged or not.
            shown = self.trainer.progress_bar_callback is not None
            self.log("train/query_loss", loss, prog_bar=shown, sync_dist=True)
            self._log_step(self.trainer.global_step)
        objective = step.objective
        if self.trainer.world_size > 1:  # only DDP needs every parameter in the graph
            objective = objective + sum(p.sum() for p in self._parameters_trained()) * 0.0
        if self.automatic_optimization:
            return objective
        if self._lightning_path is None:
            self._lightning_path = lightning_path_needed(self.trainer)
        optimizer = self.optimizers()
        optimizer.zero_grad()
        if self._lightning_path:
            self.manual_backward(objective)
            optimizer.step()  # runs on_before_optimizer_step (guard, clipping) before the update
            return None
        objective.backward()  # the same steps without Lightning's dispatch around them
        progress = step_progress(self.trainer)
        progress.increment_ready()
        self.on_before_optimizer_step(optimizer.optimizer)
        optimizer.optimizer.step()
        progress.increment_completed()
        return None

    def _log_step(self, step: int) -> None:
        # A row is labelled with the meta-iterations done before it, logged as ``step``: Lightning's
        # own label counts batches, which differ from meta-iterations when steps_per_call > 1.
        self.log("step", float(step), batch_size=1)

    def _parameters_trained(self) -> list[torch.nn.Parameter]:
        if self._trained is None:
            self._trained = [p for p in self.parameters() if p.requires_grad]
        return self._trained

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Rescale to the mean over good tasks, or skip the step; count and stop past the limit;
        clip (manual optimization; the automatic loop clips after this hook itself)."""
        params = [p for p in self._parameters_trained() if p.grad is not None]
        finite = grads_finite(params)
        good, tasks = self._good, self._tasks
        self._good = self._tasks = 0
        if self.trainer.world_size > 1:  # one tensor and a reduce only where there are ranks
            counts = torch.tensor([good, tasks], dtype=torch.float64, device=self.device)
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
            good, tasks = int(counts[0]), int(counts[1])
        try:
            skip = self.guard.record(
                step=self.global_step,
                good=good,
                tasks=tasks,
                finite_grad=finite,
                warn=self.global_rank == 0,
            )
        except BadInputError:
            # The step never completes, so self.log would never reach the logger: write the final
            # tally straight to it (flushed when the failed fit finalizes its loggers).
            if self.logger is not None:
                self.logger.log_metrics(self.guard_metrics(), step=self.global_step)
            raise
        if skip:
            for p in params:
                p.grad = None
        elif good < tasks:
            torch._foreach_mul_([p.grad for p in params], tasks / good)
        if skip or good < tasks or self._log_now():
            for key, value in self.guard_metrics().items():
                self.log(key, value)
            self._log_step(self.global_step)
        if self.grad_clip is not None and not self.automatic_optimization:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm"
            )

    def guard_metrics(self) -> dict[str, float]:
        """The bad-task counters as logged: ``train/bad_tasks`` and ``train/skipped_steps``."""
        return {
            "train/bad_tasks": float(self.guard.bad_tasks),
            "train/skipped_steps": float(self.guard.skipped_steps),
        }

    @torch.no_grad()
    def validation_step(self, batch: TaskBatch, batch_idx: int) -> None:
        # ``evaluate`` is the learner's own protocol (a routed learner routes from the support set
        # and its descriptor first), so validation measures exactly what ``metacompose eval`` does.
        curve = self.learner.evaluate(batch)  # (S + 1, T) query metric after 0..S inner steps
        n, m = batch.num_tasks, self.metric
        self.log(f"val/query_{m}_step0", curve[0].mean(), batch_size=n, sync_dist=True)
        self.log(f"val/query_{m}", curve[-1].mean(), batch_size=n, sync_dist=True, prog_bar=True)
        if m == "mse":  # for regression the query loss is the metric
            self.log("val/query_loss", curve[-1].mean(), batch_size=n, sync_dist=True)
        self._log_step(self.trainer.global_step - 1)  # as Lightning labels a validation row

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.parameters())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["metacompose"] = self.extra_checkpoint
        checkpoint["metacompose_resume"] = {
            "rng": capture_rng_state(),
            "guard": self.guard.state_dict(),
            "steps_per_call": self.steps_per_call,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        _settle_finished_batch(checkpoint)
        if not self.automatic_optimization:
            _steps_to_manual(checkpoint)
            rebatch_counters(checkpoint, steps_per_call=self.steps_per_call)
        resume = checkpoint.get("metacompose_resume", {})
        self.guard.load_state_dict(resume.get("guard", {}))
        if "rng" in resume:
            restore_rng_state(resume["rng"])


# Lightning inspects ``training_step``'s signature on every batch (does it take ``batch_idx``?): a
# stored ``__signature__`` answers without re-parsing the function (~0.1 ms of a ~4 ms meta-step).
MetaLearningModule.training_step.__signature__ = inspect.signature(MetaLearningModule.training_step)


def _steps_to_manual(checkpoint: dict[str, Any]) -> None:
    """Carry the optimizer-step count of a checkpoint written under automatic optimization (before
    manual optimization was used) into the manual loop's counter, from which ``global_step`` is
    read, so that such a run resumes at its step."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    auto = loop.get("epoch_loop.automatic_optimization.optim_progress")
    manual = loop.get("epoch_loop.manual_optimization.optim_step_progress")
    if auto is None or manual is None:
        return
    done = auto["optimizer"]["step"]["total"]["completed"]
    if done and not manual["total"]["completed"]:
        for counter in ("total", "current"):
            manual[counter] = dict(manual[counter], ready=done, completed=done)


def _settle_finished_batch(checkpoint: dict[str, Any]) -> None:
    """Let a checkpoint saved after its last batch had finished (``train`` saves one when ``fit``
    ends) resume with its log rows on the right steps.

    Lightning saves periodic checkpoints inside a batch's hooks, before it counts the batch in
    ``_batches_that_stepped``, and adds that batch on restore. It adds it to a finished batch too,
    so a run resumed from its final checkpoint (``trainer.max_steps`` raised) wrote every later log
    row one batch late and lost the last one. Such a checkpoint has every batch completed."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    total = loop.get("epoch_loop.batch_progress", {}).get("total")
    state = loop.get("epoch_loop.state_dict", {})
    if total and total["completed"] == total["processed"] and state.get("_batches_that_stepped"):
        state["_batches_that_stepped"] -= 1
