"""Evaluate checkpoints on the same meta-test tasks; write report.json, report.md and PNG plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from metacompose.cli.args import (
    COUNT_LIMIT,
    at_least,
    device,
    inner_steps,
    positive_int,
    seed,
    short_usage,
)
from metacompose.cli.paths import check_output_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    short_usage(p, "CHECKPOINT... --out DIR")
    p.add_argument(
        "checkpoints",
        nargs="+",
        help="checkpoints (runs/<name>/checkpoints/last.ckpt) or run folders",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the report files")
    p.add_argument(
        "--tasks",
        type=at_least(2, COUNT_LIMIT),
        default=200,
        help="meta-test tasks per measurement",
    )
    p.add_argument(
        "--steps", type=inner_steps, default=None, help="inner steps (default: the config's)"
    )
    p.add_argument("--shots", type=positive_int, nargs="+", default=None,
                   help="K values of sample efficiency (default: the config's report.shots)")  # fmt: skip
    p.add_argument(
        "--forgetting-length",
        type=at_least(2, COUNT_LIMIT),
        default=5,
        help="n of the sequence T1..Tn",
    )
    p.add_argument(
        "--forgetting-sequences",
        type=at_least(2, COUNT_LIMIT),
        default=50,
        help="sequences of T1..Tn",
    )
    p.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seed of the meta-test task streams (report's own: not the tasks eval draws)",
    )
    p.add_argument("--device", type=device, default="cpu", help="torch device (cpu, cuda)")


def run(args: argparse.Namespace) -> int:
    check_output_dir(args.out, "--out")
    from metacompose.training.checkpoint_io import checkpoint_file

    missing = [c for c in args.checkpoints if not checkpoint_file(c).is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: checkpoint not found")
    from metacompose.report import ReportSettings, build_report, write_report

    settings = ReportSettings(
        n_tasks=args.tasks,
        steps=args.steps,
        shots=args.shots,
        forgetting_length=args.forgetting_length,
        forgetting_sequences=args.forgetting_sequences,
        seed=args.seed,
        device=args.device,
    )
    files = write_report(build_report(args.checkpoints, settings), args.out)
    for name, path in files.items():
        print(f"{name}: {path}")
    return 0
