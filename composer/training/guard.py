"""Training that survives bad input: NaN/Inf tasks are dropped, all-bad meta-batches skipped.

A task is *bad* when its query loss after adaptation is not finite (a NaN/Inf inner loss or inner
gradient makes the adapted weights, and so the query loss, non-finite). Its graph cannot simply be
masked: ``0 * nan`` is ``nan`` in the backward pass, so the meta-objective is recomputed on the
good tasks alone. A step whose meta-gradient is still not finite, or whose meta-batch holds no good
task, is skipped (the optimizer sees no gradient).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from metacompose.algorithms import Learner, MetaStep
from metacompose.tasks.base import TaskBatch


class BadInputError(ValueError):
    """Too many bad tasks or skipped steps: the run stops (the message says how many, and where)."""


class BadTaskWarning(UserWarning):
    """Some tasks of a meta-batch were dropped, or a whole step was skipped."""


@contextlib.contextmanager
def one_line_bad_task_warnings() -> Iterator[None]:
    """Show :class:`BadTaskWarning` as ``warning: MESSAGE`` (no file name, no source line).

    Only the text is changed: recorded warnings (``pytest.warns``) and filters work as before.
    """
    default = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None) -> str:
        if issubclass(category, BadTaskWarning):
            return f"warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = fmt
    try:
        yield
    finally:
        warnings.formatwarning = default


@dataclass
class GuardedStep:
    """The meta-objective of the good tasks of one (micro-)batch.

    Attributes:
        objective: ``sum over good tasks / num_tasks`` for loss-mean algorithms (its gradient, summed
            over micro-batches and ranks and rescaled by ``tasks / good``, is the mean over the good
            tasks); a graph touching no parameter when no task is good.
        good: number of finite tasks.
        tasks: number of tasks in the batch.
        query_loss: ``(good,)`` query losses of the good tasks.
    """

    objective: torch.Tensor
    good: int
    tasks: int
    query_loss: torch.Tensor


def guarded_meta_step(learner: Learner, batch: TaskBatch, *, step: int = 0) -> GuardedStep:
    """``learner.meta_step(batch, step=step)`` (``step``: the meta-iteration), recomputed without
    the tasks whose query loss is not finite."""
    out: MetaStep = learner.meta_step(batch, step=step)
    finite = torch.isfinite(out.query_loss.detach())
    n, good = batch.num_tasks, int(finite.sum())
    if good == n:
        return GuardedStep(objective=out.objective, good=n, tasks=n, query_loss=out.query_loss)
    if good == 0:
        zero = sum(p.sum() for p in learner.parameters()) * 0.0
        return GuardedStep(objective=zero, good=0, tasks=n, query_loss=out.query_loss[:0])
    kept = learner.meta_step(batch.select(finite.nonzero().view(-1)), step=step)
    return GuardedStep(
        objective=kept.objective * (good / n), good=good, tasks=n, query_loss=kept.query_loss
    )


def grads_finite(params) -> bool:
    """Whether every gradient present on ``params`` is finite (True when none has one).

    One fused check per device (the kernel ``GradScaler`` uses, with scale 1: the gradients keep
    their values) and one sync per device: 4x cheaper than concatenating them on a small model.
    """
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return True
    grads = [p.grad for p in with_grad]
    devices = {g.device for g in grads}
    if len(devices) > 1:  # one check per device
        return all(grads_finite([p for p in with_grad if p.grad.device == d]) for d in devices)
    device = grads[0].device
    found = torch.zeros(1, device=device)
    try:
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found, torch.ones(1, device=device))
    except (RuntimeError, NotImplementedError):  # a torch or device without the fused kernel
        return bool(torch.cat([g.reshape(-1) for g in grads]).isfinite().all())
    return not bool(found)


class BadTaskGuard:
    """Counts dropped tasks and skipped steps; stops the run past its limits.

    Args:
        max_bad_tasks: the run stops with :class:`BadInputError` once more tasks than this were
            dropped (``None``: never).
    """

    def __init__(self, *, max_bad_tasks: int | None = 1000) -> None:
        self.max_bad_tasks = max_bad_tasks
        self.bad_tasks = 0
        self.skipped_steps = 0

    def record(
        self, *, step: int, good: int, tasks: int, finite_grad: bool, warn: bool = True
    ) -> bool:
        """Record one optimizer step's (global) counts; returns True when the step must be skipped.

        ``warn=False`` counts without warning (ranks other than 0 see the same global counts).

        Raises:
            BadInputError: the total of dropped tasks exceeds ``max_bad_tasks``.
        """
        bad = tasks - good
        skip = good == 0 or not finite_grad
        if bad:
            self.bad_tasks += bad
        if bad and warn:
            action = "skipped the step" if good == 0 else f"kept {good}"
            warnings.warn(
                f"step {step}: dropped {bad} of {tasks} tasks with a NaN/Inf loss ({action}; "
                f"{self.bad_tasks} dropped so far)",
                BadTaskWarning,
                stacklevel=2,
            )
        elif not finite_grad and warn:
            warnings.warn(
                f"step {step}: the meta-gradient is not finite; skipped the step",
                BadTaskWarning,
                stacklevel=2,
            )
        if skip:
            self.skipped_steps += 1
        if self.max_bad_tasks is not None and self.bad_tasks > self.max_bad_tasks:
            raise BadInputError(
                f"step {step}: {self.bad_tasks} tasks with NaN/Inf losses were dropped, more than "
                f"trainer.max_bad_tasks={self.max_bad_tasks}; check the task data, or lower "
                "algo.inner_lr / optim.lr"
            )
        return skip

    def state_dict(self) -> dict[str, int]:
        return {"bad_tasks": self.bad_tasks, "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict) -> None:
        self.bad_tasks = int(state.get("bad_tasks", 0))
        self.skipped_steps = int(state.get("skipped_steps", 0))
