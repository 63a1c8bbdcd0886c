"""Meta-validation metric against meta-iterations, read from a run's ``metrics.csv``."""

from __future__ import annotations

import csv
import math
from pathlib import Path


def run_dir_of(checkpoint: str | Path) -> Path:
    """``runs/<name>`` for ``runs/<name>/checkpoints/last.ckpt`` (else the checkpoint's folder)."""
    p = Path(checkpoint).resolve()
    return p.parent.parent if p.parent.name == "checkpoints" else p.parent


def read_curve(metrics_csv: str | Path, column: str) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of the rows of ``metrics_csv`` where ``column`` is filled.

    Raises:
        ValueError: the file has no column ``column``, or a row or byte that is not a number.
    """
    with open(metrics_csv, newline="") as f:
        reader = csv.DictReader(f)
        try:
            fields = reader.fieldnames or []
        except (UnicodeDecodeError, csv.Error) as e:
            raise ValueError(f"{metrics_csv}: not a metrics file ({e})") from e
        if column not in fields:
            raise ValueError(f"{metrics_csv}: no column {column!r}")
        steps, values = [], []
        try:
            for row in reader:
                cell = row.get(column, "")
                if cell not in ("", None) and math.isfinite(float(cell)):
                    steps.append(int(float(row["step"])))
                    values.append(float(cell))
        except (UnicodeDecodeError, csv.Error, ValueError, TypeError, KeyError) as e:
            raise ValueError(
                f"{metrics_csv}: line {reader.line_num}: not a metrics row ({e})"
            ) from e
    return steps, values
