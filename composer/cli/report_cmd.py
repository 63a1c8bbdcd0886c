"""Evaluate checkpoints on the same meta-test tasks; write report.json, report.md and PNG plots."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", help="checkpoints (runs/<name>/checkpoints/last.ckpt)")
    p.add_argument("--out", type=Path, required=True, help="folder for the report files")
    p.add_argument("--tasks", type=int, default=200, help="meta-test tasks per measurement")
    p.add_argument("--steps", type=int, default=None, help="inner steps (default: the config's)")
    p.add_argument("--shots", type=int, nargs="+", default=None,
                   help="K values of sample efficiency (default: the config's report.shots)")  # fmt: skip
    p.add_argument("--forgetting-length", type=int, default=5, help="n of the sequence T1..Tn")
    p.add_argument("--forgetting-sequences", type=int, default=50, help="sequences of T1..Tn")
    p.add_argument("--seed", type=int, default=0, help="seed of the meta-test task streams")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")


def run(args: argparse.Namespace) -> int:
    from composer.report import ReportSettings, build_report, write_report

    if args.tasks < 2:
        raise ValueError("--tasks must be >= 2 (an interval needs two tasks)")
    if args.forgetting_length < 2 or args.forgetting_sequences < 2:
        raise ValueError("--forgetting-length and --forgetting-sequences must be >= 2")
    missing = [c for c in args.checkpoints if not Path(c).is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint not found: {missing[0]}")
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
