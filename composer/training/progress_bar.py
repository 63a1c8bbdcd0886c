"""The training bar: meta-iterations out of ``trainer.max_steps``, their rate and the latest loss.

Lightning's own bar counts loader batches, and an endless task stream gives it no total (and
micro-batches of gradient accumulation are not meta-iterations). This one counts optimizer steps
towards ``max_steps``, on stderr like every :mod:`metacompose.progress` bar, and redraws its loss at
most a few times a second (a sinusoid meta-step takes about a millisecond). ``train`` adds it only
when :func:`metacompose.progress.progress_enabled` (a terminal, or ``METACOMPOSE_PROGRESS``) and
``trainer.enable_progress_bar`` agree.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks.progress import ProgressBar
from tqdm import tqdm

from metacompose.progress import progress_enabled, terminal_shape

REDRAW_SECONDS = 0.25


def bar_postfix(metrics: dict[str, Any]) -> dict[str, str]:
    """``loss`` (the latest meta-train query loss) and ``val`` (the latest meta-validation metric)."""
    shown = {}
    for key, value in metrics.items():
        if key == "train/query_loss":
            shown["loss"] = f"{float(value):.4g}"
        elif key.startswith("val/query_") and not key.endswith("_step0"):
            shown["val"] = f"{float(value):.4g}"
    return shown


class MetaProgressBar(ProgressBar):
    """One tqdm bar over the meta-iterations of a fit (global rank 0 only).

    Args:
        max_steps: the run's ``trainer.max_steps`` (the bar's total).
    """

    def __init__(self, *, max_steps: int) -> None:
        super().__init__()
        self.max_steps = max_steps
        self.bar: tqdm | None = None
        self._enabled = True
        self._drawn = 0.0
        self._postfix: dict[str, str] = {}

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled:
            return
        self.bar = tqdm(
            desc="train",
            total=self.max_steps,
            initial=trainer.global_step,  # a resumed run starts where it stopped
            unit="it",
            file=sys.stderr,
            disable=not progress_enabled(),
            leave=False,
            **terminal_shape(),
        )

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.bar is None or trainer.global_step == self.bar.n:
            return
        self.bar.update(trainer.global_step - self.bar.n)  # tqdm redraws at most every 0.1 s
        now = time.monotonic()
        if not self._postfix or now - self._drawn >= REDRAW_SECONDS:  # the first loss at once
            postfix = bar_postfix(trainer.progress_bar_metrics)
            if postfix != self._postfix:
                self._postfix, self._drawn = postfix, now
                self.bar.set_postfix(postfix, refresh=True)
        if trainer.global_step >= self.max_steps:
            self._close()  # before Lightning's "max_steps reached" line

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.write(" ".join(map(str, args)), file=self.bar.fp)
        else:
            print(*args, **kwargs)
