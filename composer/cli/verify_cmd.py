"""Certify a checkpoint's adaptations against a stability spec (exit 0 proved, 1 violated, 3 unknown)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from metacompose.cli.args import inner_steps, positive_int, seconds, seed, short_usage
from metacompose.cli.paths import check_output_dir, check_output_file


def add_arguments(p: argparse.ArgumentParser) -> None:
    short_usage(p, "CHECKPOINT [--spec SPEC.yaml] | --self-test")
    p.add_argument("checkpoint", nargs="?", help="a run's checkpoints/last.ckpt, or its run folder")
    p.add_argument(
        "--spec",
        type=Path,
        help="stability spec YAML (configs/bounds/*.yaml; default: the run config's verify.spec)",
    )
    p.add_argument(
        "--tasks", type=positive_int, default=10, help="meta-test tasks to adapt to (default 10)"
    )
    p.add_argument("--seed", type=seed, default=0, help="seed of the meta-test task stream")
    p.add_argument(
        "--steps", type=inner_steps, default=None, help="inner steps (default: the config's)"
    )
    p.add_argument("--tier", choices=("fast", "refine", "exact"), default="refine")
    p.add_argument(
        "--timeout",
        type=seconds,
        default=5.0,
        help="seconds per claim (refine/exact), and for each shared bound pass over an image network (past it, boxes keep interval bounds: sound, looser)",
    )
    p.add_argument("--json", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--report", type=Path, default=None, help="write a Markdown summary here")
    p.add_argument(
        "--witness-dir", type=Path, default=None, help="VNN-COMP witnesses of violations"
    )
    p.add_argument("--self-test", action="store_true", help="soundness self-test on random nets")
    p.add_argument(
        "--networks",
        type=positive_int,
        default=20,
        help="random MLP pairs of --self-test (plus one conv pair per 4, at least one)",
    )


def run_config_spec(cfg) -> Path:
    """The spec a run config names (``verify.spec``), found from the working directory or the
    repository root; ``ValueError`` (exit 2) when it names none."""
    name = cfg.get("verify", {}).get("spec") if hasattr(cfg, "get") else None
    if not name:
        raise ValueError(
            "verify: no --spec given and the checkpoint's run config names no verify.spec"
        )
    from metacompose.verify.spec_file import find_spec

    return find_spec(name)


def run(args: argparse.Namespace) -> int:
    for path, flag in ((args.json, "--json"), (args.report, "--report")):
        if path is not None:
            check_output_file(path, flag)
    if args.witness_dir is not None:
        check_output_dir(args.witness_dir, "--witness-dir")
    import torch

    # Certification works on tiny matrices: extra intra-op threads only contend (measured on a
    # loaded 2-core machine: 1.5 s vs 10 ms per bound pass on 1-40-40-1).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    if args.self_test and args.checkpoint is not None:
        raise ValueError(
            f"--self-test checks random networks, not {args.checkpoint}: give one or the other"
        )
    if args.self_test:
        from metacompose.progress import progress
        from metacompose.symbolic import self_test

        n_conv = max(1, args.networks // 4)
        with progress(desc="verify --self-test", total=args.networks + n_conv, unit="net") as bar:
            summary = self_test(
                n_networks=args.networks,
                n_conv=n_conv,
                seed=args.seed,
                timeout_s=args.timeout,
                on_progress=lambda done, _total: bar.update(done - bar.n),
            )
        print("\n".join(summary.lines()))
        return 0 if summary.ok else 1
    if args.checkpoint is None:
        raise ValueError("verify needs CHECKPOINT (or --self-test)")
    from metacompose.cli.learner_steps import check_steps_apply
    from metacompose.evaluate import load_with_restarts
    from metacompose.symbolic import load_spec, write_vnn_witness
    from metacompose.training.restart_record import describe_restarts
    from metacompose.verify.report import verify_learner

    learner, cfg, family, restarts = load_with_restarts(args.checkpoint)
    check_steps_apply(args.steps, learner, cfg.algo.name)
    spec_path = args.spec if args.spec is not None else run_config_spec(cfg)
    spec = load_spec(spec_path)  # SpecError is a ValueError: one line, exit 2
    report = verify_learner(
        learner,
        family,
        spec,
        n_tasks=args.tasks,
        shots=cfg.task.shots,
        query=cfg.task.query,
        steps=cfg.algo.eval_inner_steps if args.steps is None else args.steps,
        tier=args.tier,
        timeout_s=args.timeout,
        seed=args.seed,
        checkpoint=str(args.checkpoint),
    )
    c = report.counts()
    if restarts is not None:
        print(describe_restarts(restarts))
    print(
        f"{family.name}: {len(report.reports)} adaptations, tier {args.tier}: {report.status} "
        f"(claims {c['proved']} proved, {c['violated']} violated, {c['unknown']} unknown) "
        f"in {report.seconds:.2f} s"
    )
    for info, rep in zip(report.tasks, report.reports):
        bad = [f"{r.claim}={r.status}" for r in rep.results if r.status in ("violated", "unknown")]
        print(f"  task {info['task']}: {rep.status}" + (f" ({', '.join(bad)})" if bad else ""))
        if args.witness_dir is not None:
            for r in rep.results:
                ce = getattr(r.outcome, "counterexample", None)
                if ce is not None and ce.x is not None and ce.y is not None:
                    args.witness_dir.mkdir(parents=True, exist_ok=True)
                    name = f"task{info['task']}_{r.claim.replace('[', '_').replace(']', '')}.txt"
                    write_vnn_witness(args.witness_dir / name, ce)
    _write_files(args, report, restarts)
    return report.exit_code


def _write_files(args: argparse.Namespace, report, restarts: dict | None) -> None:
    """``--json`` (with the checkpoint's block-restart record, when it has one) and ``--report``."""
    extra = {"restart_banks": restarts} if restarts is not None else {}
    for path, text in (
        (args.json, lambda: json.dumps({**report.to_json(), **extra}, indent=2)),
        (args.report, report.to_markdown),
    ):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text())
