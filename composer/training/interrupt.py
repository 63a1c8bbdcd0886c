"""Ctrl-C and SIGTERM lose nothing: the run stops after the current meta-step and saves it.

:class:`GracefulStop` replaces the SIGINT and SIGTERM handlers while ``fit`` runs. A signal only
raises a flag. At the next meta-step boundary (after an optimizer step, never between the
accumulated micro-batches of one meta-batch; with ``trainer.steps_per_call`` above 1, after the
batch's last meta-step) the ranks agree on the flag (a max all-reduce under
DDP, so a signal sent to rank 0 alone stops every rank at the same step) and save a full, resumable
``last.ckpt`` of that step; before the next step starts they leave the fit with
:class:`_StopRequested`. ``train`` turns it into :class:`TrainingInterrupted`, which the CLI maps
to exit status ``128 + signal`` (130 for SIGINT, 143 for SIGTERM). The checkpoint is taken at the
same point of the loop as the periodic ones, so ``--resume`` continues bit-identically (weights and
``metrics.csv``). A second signal ends the process at once, unsaved.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _StopRequested(Exception):
    """Raised from a callback to leave ``fit`` at once, after the stop checkpoint is saved."""


class GracefulStop(Callback):
    """Stop at the end of the current meta-step on SIGINT/SIGTERM, saving ``checkpoint`` first.

    Args:
        checkpoint: where the stop checkpoint goes (the run's ``checkpoints/last.ckpt``).
    """

    def __init__(self, *, checkpoint: Path) -> None:
        self.checkpoint = Path(checkpoint)
        self.signum: int | None = None  # the first signal received (this process)
        self.stopped: tuple[int, int] | None = None  # (signal, step) of the agreed stop
        self._previous: dict[int, Any] = {}
        self._step = -1

    # -- signal handling -------------------------------------------------------------------------

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator[None]:
        """Handle SIGINT/SIGTERM from here on; the previous handlers are back when the block ends.

        ``train`` wraps ``fit`` in it. Without it (``ddp_spawn`` workers, a fit of your own) the
        handlers are set in ``on_train_start`` and Lightning's teardown puts the old ones back.
        """
        self._install()
        try:
            yield
        finally:
            self._restore()

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers (a fit in a thread keeps Lightning's)
        for signum in SIGNALS:
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            if rank_zero_only.rank == 0:  # at once: a long validation may come before the stop
                said = (
                    f"\nmetacompose: {signal.Signals(signum).name}: stopping after this meta-step "
                    "(and its validation) and saving it; send it again to stop now, unsaved\n"
                )
                with contextlib.suppress(OSError):  # os.write: print() here may re-enter stderr
                    os.write(sys.stderr.fileno(), said.encode())
            return
        # A second signal: give up saving and end the process the way the signal normally does.
        print(
            f"metacompose: second {signal.Signals(signum).name}: stopping now, without saving",
            file=sys.stderr,
            flush=True,
        )
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    # -- Lightning hooks -------------------------------------------------------------------------

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()  # again: Lightning has put its own SIGTERM handler in since fit began
        self._step = trainer.global_step

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.global_step == self._step:
            return  # between accumulated micro-batches: not a meta-step boundary
        self._step = trainer.global_step
        signum = self._agreed_signal(trainer, pl_module)
        if not signum:
            return
        trainer.save_checkpoint(self.checkpoint, weights_only=False)  # every rank (barrier)
        self.stopped = (signum, trainer.global_step)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # Leave one hook late, so that Lightning first logs the saved step (and validates, if it is
        # a validation step) exactly as after a periodic checkpoint: resumed logs match too.
        if self.stopped is not None:
            raise _StopRequested

    def _agreed_signal(self, trainer: L.Trainer, pl_module: L.LightningModule) -> int:
        """The signal every rank stops for (the largest number any rank got; 0: go on)."""
        local = self.signum or 0
        if trainer.world_size == 1:
            return local
        flag = torch.tensor(float(local), device=pl_module.device)
        return int(trainer.strategy.reduce(flag, reduce_op="max"))
