"""Loggers users expect: CSV by default (continued, not overwritten, on resume), TensorBoard."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from metacompose.config import ConfigError

LOGGERS = ("csv", "tensorboard", "none")


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing ``metrics.csv`` is continued."""

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if path.is_file():
            with path.open(newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` writing ``<save_dir>/metrics.csv``; a resumed run appends to it."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def trim_metrics(path: str | Path, *, before_step: int) -> None:
    """Drop rows logged at or after ``before_step`` (by a run killed after its last checkpoint)."""
    path = Path(path)
    if not path.is_file():
        return
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fieldnames = list(reader.fieldnames or [])
        rows = [r for r in reader if not r.get("step") or int(float(r["step"])) < before_step]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)


def make_logger(kind: str, run_dir: str | Path) -> Logger | bool:
    """``"csv"`` (``run_dir/metrics.csv``), ``"tensorboard"`` (``run_dir/tensorboard``) or ``"none"``.

    Raises:
        ConfigError: unknown kind, or TensorBoard asked for but not installed.
    """
    if kind == "csv":
        return ResumableCSVLogger(save_dir=str(run_dir), name="", version="")
    if kind == "tensorboard":
        if not any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
            raise ConfigError(
                "trainer.logger=tensorboard: the tensorboard package is not installed "
                "(pip install tensorboard, or use trainer.logger=csv)"
            )
        return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")
    if kind == "none":
        return False
    raise ConfigError(f"trainer.logger={kind!r}: expected one of {LOGGERS}")
