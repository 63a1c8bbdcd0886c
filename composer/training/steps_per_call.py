"""Several meta-iterations per Lightning batch (``trainer.steps_per_call``), so that the trainer's
fixed cost per batch is paid once for several meta-steps.

Lightning's fit loop costs ~0.25-0.4 ms per batch (hooks, progress tracking, logging checks) on
CPU, whatever the batch holds: ~10% of a 3.5 ms sinusoid meta-step. With ``n`` meta-iterations per
batch (Keras' ``steps_per_execution``) that cost is paid once per ``n`` steps. Nothing about the
numbers changes: the task stream, the order of the meta-iterations, every guard, clip and optimizer
step are those of ``n = 1`` (``tests/composer/training/test_steps_per_call.py`` checks weights and
``metrics.csv`` bit for bit). The trainer counts batches where it counts anything, so ``n`` must
divide every cadence (``max_steps``, ``val_check_interval``, ``log_every_n_steps``,
``checkpoint_every_n_steps``) and the step a run resumes from; then every checkpoint, validation,
log row and stop lands on exactly the step it does with ``n = 1``.

``"auto"`` picks the largest divisor of those numbers up to a limit for vector inputs, and 1 for
images (a conv meta-step takes 0.1-1 s: the trainer's cost is already below 1%, and a batch of
several steps would only delay Ctrl-C and the progress bar) or when a meta-batch is cut into
micro-batches (gradient accumulation runs on Lightning's own loop). The limit comes from a timing
probe in a single-process CPU run (:func:`probe_step_seconds`: a batch lasts at most about
:data:`BATCH_SECONDS`, and at most :data:`AUTO_CAP` steps), else it is :data:`AUTO_MAX` (several
ranks must agree on the count, and their clocks would not; on an accelerator the learner is timed
where it runs only after the trainer has moved it). Measured on the sinusoid config
(``scripts/bench_scale.py --only tax``): 5 steps per batch leave ~9% of the raw loop's speed to the
trainer, 25 about 5%.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

from metacompose.algorithms import Learner
from metacompose.config import ConfigError
from metacompose.tasks.base import TaskBatch
from metacompose.training.rng import capture_rng_state, restore_rng_state

AUTO_MAX = 8  # the most meta-steps per batch "auto" takes without a timing probe
AUTO_CAP = 25  # ... and with one
BATCH_SECONDS = 0.1  # with a probe: a batch of several meta-steps lasts about this long at most


def auto_limit(step_seconds: float | None) -> int:
    """The most meta-steps per batch ``"auto"`` may take, for a meta-step of ``step_seconds``
    (``None``: not probed)."""
    if step_seconds is None:
        return AUTO_MAX
    return max(1, min(AUTO_CAP, int(BATCH_SECONDS / max(step_seconds, 1e-9))))


def probe_step_seconds(learner: Learner, batch: TaskBatch, *, repeats: int = 4) -> float:
    """Wall seconds of one meta-step with its backward, run on a copy of ``learner`` (the learner,
    its gradients and every random state are left as they were): the fastest of up to ``repeats``
    steps after the first (which warms up), fewer once they have taken 2 * :data:`BATCH_SECONDS`."""
    rng = capture_rng_state()
    probe = copy.deepcopy(learner)
    times: list[float] = []
    try:
        while len(times) < repeats and sum(times) < 2 * BATCH_SECONDS:
            start = time.perf_counter()
            probe.meta_step(batch, step=0).objective.backward()
            times.append(time.perf_counter() - start)
    finally:
        del probe
        restore_rng_state(rng)
    return min(times[1:]) if len(times) > 1 else times[0]


def resolve_steps_per_call(
    value: int | str,
    *,
    cadences: dict[str, int],
    chunks: int,
    image: bool,
    resume_step: int = 0,
    step_seconds: float | None = None,
) -> int:
    """Meta-iterations per Lightning batch for ``trainer.steps_per_call=value``.

    Args:
        value: ``"auto"`` or a count >= 1 (validated by the config checks).
        cadences: ``trainer.<key>`` -> its value in meta-iterations, for every cadence ``n`` must
            divide (``max_steps``, ``val_check_interval``, ...).
        chunks: micro-batches per meta-batch (``data.task_chunk_size``); above 1, ``n`` is 1.
        image: the task inputs are images.
        resume_step: the meta-iteration a resumed run starts from (0: a fresh run).
        step_seconds: a probed meta-step's seconds (:func:`probe_step_seconds`), which sets the
            most ``"auto"`` takes (:func:`auto_limit`); ``None``: :data:`AUTO_MAX`.

    Raises:
        ConfigError: an explicit count that does not divide a cadence, or with micro-batches.
    """
    if value == "auto":
        if chunks > 1 or image:
            return 1
        g = math.gcd(resume_step, *cadences.values())
        return max(d for d in range(1, auto_limit(step_seconds) + 1) if g % d == 0)
    n = int(value)
    if n > 1 and chunks > 1:
        raise ConfigError(
            f"trainer.steps_per_call={n}: needs one micro-batch per meta-batch, but "
            f"data.task_chunk_size / data.memory_budget_mb cut it into {chunks}; set it to 1 or auto"
        )
    for key, every in cadences.items():
        if every % n:
            raise ConfigError(
                f"trainer.steps_per_call={n}: must divide trainer.{key}={every} (or use auto)"
            )
    if resume_step % n:
        raise ConfigError(
            f"trainer.steps_per_call={n}: must divide the step the run resumes from "
            f"({resume_step}); use auto"
        )
    return n


def rebatch_counters(checkpoint: dict[str, Any], *, steps_per_call: int) -> None:
    """Make a checkpoint's batch counters those of ``steps_per_call`` meta-steps per batch.

    A run resumed with another ``n`` than it was saved with (``auto`` chose differently, e.g. after
    ``trainer.max_steps`` was raised) must count ``steps / n`` batches done, or validation and log
    rows (counted in batches) would fall on other steps. Only for one micro-batch per meta-batch
    (manual optimization), where the optimizer-step counter is the meta-iteration.
    """
    resume = checkpoint.setdefault("metacompose_resume", {})
    saved = int(resume.get("steps_per_call", 1))
    if saved == steps_per_call:
        return
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    manual = loop.get("epoch_loop.manual_optimization.optim_step_progress")
    if manual is None:
        return
    steps = int(manual["total"]["completed"])
    # Shift, not overwrite: a checkpoint taken inside a batch's hooks counts that batch in some
    # counters and not yet in others, and Lightning's restore relies on that offset.
    shift = steps // steps_per_call - steps // saved
    progress = loop.get("epoch_loop.batch_progress")
    if progress is not None:
        for counter in ("total", "current"):
            progress[counter] = {k: v + shift for k, v in progress[counter].items()}
    state = loop.get("epoch_loop.state_dict")
    if state is not None and "_batches_that_stepped" in state:
        state["_batches_that_stepped"] += shift
    resume["steps_per_call"] = steps_per_call
