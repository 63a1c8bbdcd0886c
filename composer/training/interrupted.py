"""What ``train`` raises when SIGINT or SIGTERM stopped it after saving (no Lightning import:
the restart stage and the scripts that catch it start fast; the stop itself:
:mod:`~metacompose.training.interrupt`)."""

from __future__ import annotations

import signal
from pathlib import Path


class TrainingInterrupted(Exception):
    """A run stopped by SIGINT/SIGTERM after saving a resumable checkpoint of its last meta-step.

    Attributes:
        signum: the signal that stopped it.
        run_dir: the run folder (continue it with ``--resume run_dir``).
        checkpoint: the checkpoint written at the stop.
        step: meta-iterations done.
        rank: this process's global rank (only rank 0 should tell the user).
        where: when it came, if not "at meta-iteration STEP" (e.g. during block restarts).
    """

    def __init__(
        self, *, signum: int, run_dir: Path, checkpoint: Path, step: int, rank: int,
        where: str | None = None,
    ) -> None:  # fmt: skip
        self.signum = signum
        self.run_dir = run_dir
        self.checkpoint = checkpoint
        self.step = step
        self.rank = rank
        where = where or f"at meta-iteration {step}"
        super().__init__(f"{signal.Signals(signum).name} {where}: saved {checkpoint}")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 130 (SIGINT), 143 (SIGTERM)."""
        return 128 + self.signum
