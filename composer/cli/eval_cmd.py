"""Adapt a checkpoint to fresh meta-test tasks; report the query metric after 0..S inner steps."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from metacompose.cli.args import (
    COUNT_LIMIT,
    at_least,
    inner_steps,
    positive_int,
    routing_option,
    seed,
    short_usage,
)
from metacompose.cli.learner_steps import check_steps_apply
from metacompose.cli.paths import check_output_file

# Learners without adaptation steps (they read the support set): a table over K, not over steps.
SHOTS_TABLE = (1, 2, 5, 10, 20)


def add_arguments(p: argparse.ArgumentParser) -> None:
    short_usage(p, "CHECKPOINT")
    p.add_argument("checkpoint", help="a run's checkpoints/last.ckpt, or its run folder")
    p.add_argument(
        "--tasks",
        type=at_least(2, COUNT_LIMIT),
        default=600,
        help="meta-test tasks (default 600; at least 2, as an interval needs two)",
    )
    p.add_argument(
        "--steps", type=inner_steps, default=None, help="inner steps (default: the config's)"
    )
    p.add_argument(
        "--shots", type=positive_int, default=None, help="support size K (default: the config's)"
    )
    p.add_argument("--seed", type=seed, default=0, help="seed of the meta-test task stream")
    p.add_argument(
        "--subset",
        default=None,
        help="draw only this subset of the family's tasks (compositional: seen, held_out, all)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    routing_option(p)


def run(args: argparse.Namespace) -> int:
    if args.json is not None:
        check_output_file(args.json, "--json")
    from metacompose.algorithms.context_learner import ContextLearner
    from metacompose.build import check_task_sizes
    from metacompose.evaluate import check_subset, evaluate, load_with_restarts
    from metacompose.training.restart_record import describe_restarts

    learner, cfg, family, restarts = load_with_restarts(args.checkpoint, routing=args.routing)
    check_steps_apply(args.steps, learner, cfg.algo.name)
    check_subset(family, args.subset)
    if args.shots is not None:
        check_task_sizes(family, shots=args.shots, query=cfg.task.query, where="--shots")
    if isinstance(learner, ContextLearner):
        return _run_shots(args, learner, cfg, family)
    result = evaluate(
        learner,
        family,
        n_tasks=args.tasks,
        steps=cfg.algo.eval_inner_steps if args.steps is None else args.steps,
        shots=cfg.task.shots if args.shots is None else args.shots,
        query=cfg.task.query,
        seed=args.seed,
        subset=args.subset,
    )
    subset = f" ({args.subset})" if args.subset else ""
    routed = f", routed: {args.routing} (--routing)" if args.routing else ""
    print(
        f"{family.name}: {cfg.algo.name}, K={result.shots}, {result.n_tasks} meta-test "
        f"tasks{subset}{routed}"
    )
    if restarts is not None:
        print(describe_restarts(restarts))
    print(result.table())
    grouped = _over_groups(result, family, cfg, args)
    if args.json is not None:
        extra = {**grouped, **({"restart_banks": restarts} if restarts is not None else {})}
        extra.update({"routed_by": args.routing} if args.routing else {})
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**result.to_json_dict(), **extra}, indent=2))
    return 0


def _over_groups(result, family, cfg, args: argparse.Namespace) -> dict:
    """Grouped families: the tasks are not independent, the groups are. Print the table with
    Student-t intervals over per-group means and return it for the JSON (``{}`` otherwise)."""
    from metacompose.report.grouped_stats import grouped_table, over_groups_per_step
    from metacompose.report.grouped_tasks import eval_task_groups, has_groups

    if not has_groups(family) or args.subset is not None:
        return {}
    groups = eval_task_groups(
        family, n_tasks=result.n_tasks, shots=result.shots, query=cfg.task.query, seed=args.seed
    )
    print(grouped_table(result.per_task, groups, family.metric))
    rows = over_groups_per_step(result.per_task, groups)
    return {"over_groups": [e.to_json_dict() for e in rows]}


def _run_shots(args: argparse.Namespace, learner, cfg, family) -> int:
    """In-context learners: the metric for each K up to the config's (or ``--shots``)."""
    from metacompose.build import check_task_sizes
    from metacompose.evaluate import evaluate_shots

    top = cfg.task.shots if args.shots is None else args.shots
    shots = sorted({k for k in SHOTS_TABLE if k < top} | {top})
    for k in shots:
        check_task_sizes(family, shots=k, query=cfg.task.query, where=f"shots={k}")
    result = evaluate_shots(
        learner, family, shots=shots, n_tasks=args.tasks, query=cfg.task.query, seed=args.seed
    )
    print(f"{family.name}: {cfg.algo.name} (no adaptation steps), {result.n_tasks} meta-test tasks")
    print(result.table())
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_json_dict(), indent=2))
    return 0
