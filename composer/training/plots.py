"""PNG learning curves of a run folder, read from its ``metrics.csv``."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# file name -> (title, y label, [(column prefix, curve label)])
CURVES = {
    "meta_train_loss.png": ("Meta-train query loss", "query loss", [("train/query_loss", "train")]),
    "meta_val_loss.png": (
        "Meta-validation query loss (after adaptation)",
        "query loss",
        [("val/query_loss", "validation")],
    ),
    "post_adaptation_metric.png": (
        "Meta-validation query metric",
        "metric",
        [("val/query_{m}_step0", "before adaptation"), ("val/query_{m}", "after adaptation")],
    ),
}


def read_metrics(path: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """Each logged column of a Lightning ``metrics.csv`` as ``(steps, values)``, blanks skipped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: no ``step`` column, or a row or byte that is not a number (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics.csv (is this a run folder?)")
    with path.open(newline="") as f:
        try:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
        except (UnicodeDecodeError, csv.Error) as e:
            raise ValueError(f"{path}: not a metrics file ({e})") from e
        if "step" not in fields:
            raise ValueError(f"{path}: not a metrics file (no 'step' column)")
        series: dict[str, tuple[list[int], list[float]]] = {}
        try:
            for row in reader:
                step = int(float(row["step"]))
                for key, value in row.items():
                    if key in ("step", "epoch") or value in ("", None):
                        continue
                    steps, values = series.setdefault(key, ([], []))
                    steps.append(step)
                    values.append(float(value))
        except (UnicodeDecodeError, csv.Error, ValueError, TypeError) as e:
            raise ValueError(f"{path}: line {reader.line_num}: not a metrics row ({e})") from e
    return series


def metric_name(series: dict) -> str:
    """``mse`` or ``accuracy``: the metric suffix the run logged."""
    for key in series:
        if key.startswith("val/query_") and key.endswith("_step0"):
            return key.removeprefix("val/query_").removesuffix("_step0")
    return "mse"


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write the PNG curves of ``run_dir/metrics.csv`` into ``out_dir`` (default: ``run_dir/plots``).

    Returns:
        the written files (a curve with no logged points is left out).
    """
    run_dir = Path(run_dir)
    series = read_metrics(run_dir / "metrics.csv")
    m = metric_name(series)
    out = Path(out_dir) if out_dir is not None else run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (title, ylabel, columns) in CURVES.items():
        lines = [(series[c.format(m=m)], label) for c, label in columns if c.format(m=m) in series]
        if not lines:
            continue
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for (steps, values), label in lines:
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, label=label)
        ax.set_title(f"{title}\n{run_dir.name}", fontsize=10)
        ax.set_xlabel("meta-iteration")
        ax.set_ylabel(ylabel.replace("metric", m))
        if m == "mse" and all(v > 0 for (_, vs), _ in lines for v in vs):
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)
        written.append(out / name)
    return written
