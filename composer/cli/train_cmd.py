"""Meta-train from a YAML config; prints the run folder as the last line."""

from __future__ import annotations

import argparse
import math
import shlex
import signal
import sys
from pathlib import Path

from metacompose.cli.args import short_usage
from metacompose.cli.paths import check_output_dir
from metacompose.config import in_file, load_config, under


def add_arguments(p: argparse.ArgumentParser) -> None:
    short_usage(p, "CONFIG [key=value ...]")
    p.add_argument("config", help="YAML config, e.g. configs/sinusoid.yaml")
    p.add_argument(
        "overrides",
        nargs="*",
        default=[],  # else argparse counts it among the missing when the config is
        metavar="key=value",
        help="dotted overrides, e.g. trainer.max_steps=500",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue a run exactly from its checkpoints/last.ckpt (or a given .ckpt file)",
    )
    # key=value after an option (``--resume RUN trainer.max_steps=9``) is an override too
    p.set_defaults(_late_positionals="overrides")


def check_not_moved(resume: str, cfg, keys: list[str]) -> None:
    """A resumed run continues in its own folder: ``name=`` or ``out_dir=`` given with
    ``--resume`` must name that folder (as the resume line printed after a stop does), else
    :class:`ConfigError` (it was silently ignored)."""
    from metacompose.config import ConfigError
    from metacompose.training.resume import load_resume_point

    if "out_dir" not in keys and "name" not in keys:
        return
    run = load_resume_point(resume).run_dir.resolve()  # a checkpoint it cannot resume: that first
    moved = ("out_dir" in keys and Path(cfg.out_dir).resolve() != run.parent) or (
        "name" in keys and bool(cfg.name) and cfg.name != run.name
    )
    if moved:
        raise ConfigError(
            f"name={cfg.name} out_dir={cfg.out_dir} with --resume {resume}: a resumed run "
            f"continues in its own folder ({run}); drop them, or start a new run without --resume"
        )


def run(args: argparse.Namespace) -> int:
    from metacompose.training import TrainingInterrupted, train  # heavy import (lightning) only now

    cfg = load_config(args.config, args.overrides)
    if cfg.task.family == "grouped":  # what the dataset kept, and why, before any training
        from metacompose.build import build_family
        from metacompose.config import ConfigError
        from metacompose.tasks.grouped_spec import screen_line

        try:
            line = screen_line(cfg.task)
        except (ValueError, FileNotFoundError) as e:
            raise in_file(args.config, under("task.args", e, cfg.task.args)) from e
        try:  # shots + query the family cannot serve: that error alone, not the screen too
            build_family(cfg.task)
        except ConfigError as e:
            raise in_file(args.config, e) from e
        print(line, file=sys.stderr)
    if args.resume is not None:
        check_not_moved(args.resume, cfg, [o.split("=", 1)[0] for o in args.overrides])
    if args.resume is None:
        check_output_dir(cfg.out_dir, "out_dir=")
        if cfg.name:
            check_output_dir(Path(cfg.out_dir) / cfg.name, "name=")
    from metacompose.training.checkpoint_io import CheckpointError
    from metacompose.training.guard import BadInputError
    from metacompose.training.run_lock import RunFolderBusy

    try:
        result = train(cfg, config_name=Path(args.config).stem, resume=args.resume)
    except (RunFolderBusy, CheckpointError, BadInputError):  # not the config's fault
        raise
    except ValueError as e:  # built from the config file (ConfigError, GraphError, ...)
        raise in_file(args.config, e) from e
    except TrainingInterrupted as stop:  # SIGINT/SIGTERM: saved; one line, exit 130/143
        if stop.rank == 0:
            again = shlex.join(["metacompose", "train", args.config, *args.overrides])
            print(
                f"metacompose train: {stop}; resume with: {again} --resume {stop.run_dir}",
                file=sys.stderr,
            )
        return stop.exit_code
    if result.restarts and result.metrics:  # validation ran before the restarts changed the banks
        print("validation before the block restarts (metacompose eval scores the restarted model):")
    for key, value in sorted(result.metrics.items()):
        if key != "step":  # the row's label in metrics.csv, not a metric ("step: 19.0000")
            print(f"{key}: {value:.4f}")
    done, start = cfg.trainer.max_steps - result.start_step, result.start_step
    since = f" (resumed at {start}, now at {cfg.trainer.max_steps})" if start else ""
    also = phases_said((result.restarts or {}).get("phases", []))
    print(
        f"trained {done} meta-iteration{'s' * (done != 1)}{since}{also} in {result.seconds:.1f} s"
    )
    print(result.run_dir)
    bad = sorted(
        k for k, v in result.metrics.items() if k.startswith("val/") and not math.isfinite(v)
    )
    failed = False
    if bad:  # saved either way; a run whose steps were mostly skipped did not train: exit 1
        skipped, steps = int(result.metrics.get("train/skipped_steps", 0)), cfg.trainer.max_steps
        failed = 2 * skipped >= steps  # the guard's count, over the whole run
        what = (
            "the model diverged; lower optim.lr or algo.inner_lr"
            if failed
            else "some validation tasks did not adapt to a finite loss"
        )
        print(
            f"metacompose train: {bad[0]} is {result.metrics[bad[0]]} ({skipped} of {steps} "
            f"meta-iterations skipped): {what}",
            file=sys.stderr,
        )
    if result.signal is not None:  # the user asked to stop: a chained command must not go on
        name = signal.Signals(result.signal).name
        when = "the last block-restart phase's" if result.restarts else "the last meta-iteration's"
        print(f"metacompose train: {name} came after {when} start: the run finished and is saved "
              f"({result.checkpoint})", file=sys.stderr)  # fmt: skip
        return 128 + result.signal
    return 1 if failed else 0


def phases_said(phases: list[dict]) -> str:
    """`` and N block-restart phases (K took a restart[, the polish kept][, the distil kept])``;
    ``""``: none."""
    if not phases:
        return ""
    took = sum(ph["kept"] > 0 and ph.get("slot") in ("f", "g") for ph in phases)
    kept = ""
    for slot, name in (("p", "polish"), ("d", "distil")):
        done = [ph["kept"] > 0 for ph in phases if ph.get("slot") == slot]
        kept += f", the {name} {'kept' if any(done) else 'not kept'}" if done else ""
    return f" and {len(phases)} block-restart phases ({took} took a restart{kept})"
