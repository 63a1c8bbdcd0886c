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

``"auto"`` picks the largest divisor of those numbers up to :data:`AUTO_MAX` for vector inputs, and
1 for images (a conv meta-step takes 0.1-1 s: the trainer's cost is already below 1%, and a batch
of several steps would only delay Ctrl-C and the progress bar) or when a meta-batch is cut into
micro-batches (gradient accumulation runs on Lightning's own loop).
"""

from __future__ import annotations

import math
from typing import Any

from metacompose.config import ConfigError

AUTO_MAX = 8  # meta-steps per batch chosen by "auto": the trainer's cost is then <= ~1.5%


def resolve_steps_per_call(
    value: int | str,
    *,
    cadences: dict[str, int],
    chunks: int,
    image: bool,
    resume_step: int = 0,
) -> int:
    """Meta-iterations per Lightning batch for ``trainer.steps_per_call=value``.

    Args:
        value: ``"auto"`` or a count >= 1 (validated by the config checks).
        cadences: ``trainer.<key>`` -> its value in meta-iterations, for every cadence ``n`` must
            divide (``max_steps``, ``val_check_interval``, ...).
        chunks: micro-batches per meta-batch (``data.task_chunk_size``); above 1, ``n`` is 1.
        image: the task inputs are images.
        resume_step: the meta-iteration a resumed run starts from (0: a fresh run).

    Raises:
        ConfigError: an explicit count that does not divide a cadence, or with micro-batches.
    """
    if value == "auto":
        if chunks > 1 or image:
            return 1
        g = math.gcd(resume_step, *cadences.values())
        return max(d for d in range(1, AUTO_MAX + 1) if g % d == 0)
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
