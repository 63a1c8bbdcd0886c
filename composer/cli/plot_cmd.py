"""Plot a run's learning curves (meta-train loss, meta-val query loss, metric) as PNG files."""

from __future__ import annotations

import argparse
from pathlib import Path

from metacompose.cli.args import short_usage
from metacompose.cli.paths import check_output_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    short_usage(p, "RUN_DIR")
    p.add_argument("run_dir", type=Path, help="a run folder holding metrics.csv")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_DIR/plots)")


def run(args: argparse.Namespace) -> int:
    if not args.run_dir.is_dir():  # before the default --out (RUN_DIR/plots) is judged
        what = "is a file" if args.run_dir.exists() else "does not exist"
        raise ValueError(f"RUN_DIR {args.run_dir}: {what}; give a run folder (holding metrics.csv)")
    check_output_dir(args.run_dir / "plots" if args.out is None else args.out, "--out")
    from metacompose.training.plots import plot_run

    written = plot_run(args.run_dir, args.out)
    if not written:
        raise ValueError(f"{args.run_dir / 'metrics.csv'}: no curves logged yet")
    for path in written:
        print(path)
    return 0
