"""Inspect what a checkpoint composes per task: graphs (JSON/DOT/PNG), module usage, heat map."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from metacompose.cli.args import non_negative_int, positive_int, routing_option, seed, short_usage
from metacompose.cli.paths import check_output_dir

# Graph files (three per task) by default: a large --tasks is for the routing statistics.
GRAPHS_DEFAULT = 100


def add_arguments(p: argparse.ArgumentParser) -> None:
    short_usage(p, "CHECKPOINT --out DIR")
    p.add_argument("checkpoint", help="a run's checkpoints/last.ckpt, or its run folder")
    p.add_argument(
        "--tasks", type=positive_int, default=8, help="meta-test tasks to inspect (default 8)"
    )
    p.add_argument("--seed", type=seed, default=0, help="seed of the inspected task stream")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--graphs",
        type=non_negative_int,
        default=None,
        help=f"write graph files for the first N tasks only (default: all, at most {GRAPHS_DEFAULT})",
    )
    routing_option(p)


def run(args: argparse.Namespace) -> int:
    check_output_dir(args.out, "--out")
    from metacompose.algorithms.annealed_sum import AnnealedSumLearner
    from metacompose.algorithms.context_learner import ContextLearner
    from metacompose.algorithms.learned_opt import LearnedOptimizerLearner
    from metacompose.algorithms.learner import ParameterAdapter, candidate_slots
    from metacompose.evaluate import load_with_restarts
    from metacompose.progress import track
    from metacompose.router.inspection import (
        inspect_exported,
        inspect_plain,
        inspect_routed,
        sample_tasks,
        usage_table,
    )
    from metacompose.router.learner import RoutedMetaLearner
    from metacompose.router.render import draw_graph, to_dot
    from metacompose.tasks.base import factors_of
    from metacompose.training.restart_record import describe_restarts

    learner, cfg, family, restarts = load_with_restarts(args.checkpoint, routing=args.routing)
    batch = sample_tasks(
        family, args.tasks, shots=cfg.task.shots, query=cfg.task.query, seed=args.seed
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    from_data = isinstance(learner, AnnealedSumLearner)
    if restarts is not None:
        print(describe_restarts(restarts))
    routed = from_data or isinstance(learner, RoutedMetaLearner)
    if isinstance(learner, ContextLearner):
        return _inspect_context(learner, out)
    if not routed and not isinstance(learner, (ParameterAdapter, LearnedOptimizerLearner)):
        raise ValueError(f"inspect: no inspection for a {type(learner).__name__}")
    if from_data:
        _write_overlap(learner, family, batch, out)
        results = inspect_exported(learner, family, batch)
    elif routed:
        results = inspect_routed(learner, family, batch)
    else:
        results = [inspect_plain(learner, batch)]
    n_graphs = min(GRAPHS_DEFAULT if args.graphs is None else args.graphs, len(results))
    for i, r in enumerate(track(results[:n_graphs], desc="inspect: write graphs", unit="graph")):
        r.report.update({"routed_by": args.routing} if args.routing else {})
        (out / f"graph_{i}.json").write_text(json.dumps(r.report, indent=2))
        (out / f"graph_{i}.dot").write_text(to_dot(r.report))
        draw_graph(r.report, out / f"graph_{i}.png")
    print(f"wrote {n_graphs} graph(s) (json, dot, png) to {out}")
    if not routed or not results[0].choice:
        print("no routed slots: no usage table")
        return 0
    rows = usage_table(results, family, batch, shared=candidate_slots(learner).shared)
    with open(out / "usage.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote usage.csv ({len(rows)} rows)")
    factors = factors_of(family)
    if factors:
        _write_routing(learner, family, batch, results, out, restarts=restarts, by=args.routing)
    return 0


def _inspect_context(learner, out: Path) -> int:
    """An in-context learner adapts no weights and routes nothing: write its structure only."""
    predictor = learner.predictor
    model = {
        "learner": type(predictor).__name__,
        "loss": learner.loss,
        "num_parameters": sum(p.numel() for p in learner.parameters()),
        "encoder": learner.graph.to_json_dict(),
        "modules": {n: type(m).__name__ for n, m in predictor.named_children()},
    }
    (out / "model.json").write_text(json.dumps(model, indent=2))
    print(f"wrote model.json to {out}")
    print(
        f"{model['learner']}: adapts by reading the support set: no per-task graphs or weight changes"
    )
    print("no routed slots: no usage table")
    return 0


def _write_overlap(learner, family, batch, out: Path) -> None:
    """Which of the annealed learner's candidates share curves, over the family's input range (the
    inspected tasks' when it declares none; label-free: :mod:`metacompose.router.bank_overlap`):
    one line and ``bank_overlap.json``."""
    import torch

    from metacompose.router.bank_overlap import learner_overlap
    from metacompose.tasks.base import HasInputRange

    if isinstance(family, HasInputRange):
        low, high = family.x_range
    else:
        xs = torch.cat([batch.support_x.flatten(), batch.query_x.flatten()])
        low, high = float(xs.min()), float(xs.max())
    overlap = learner_overlap(learner, low=low, high=high)
    if overlap is None:
        why = "reads no single candidate" if learner.routing == "uniform" else "is not a sum"
        print(f"bank overlap: not measured (the learner {why})")
        return
    print(overlap.describe("bank overlap"))
    (out / "bank_overlap.json").write_text(json.dumps(overlap.to_json(), indent=2))


def _write_routing(
    learner, family, batch, results, out: Path, *, restarts: dict | None, by: str | None
) -> None:
    """The heat map of candidates vs true factor values and ``routing.json`` (NMI, matched
    accuracy, for interchangeable slots also as a set; the checkpoint's block-restart record when
    it has one; ``routed_by``: ``--routing``, when given), for a family that exposes its
    factors."""
    import numpy as np

    from metacompose.algorithms.learner import candidate_slots
    from metacompose.evaluate import family_purity
    from metacompose.router.render import draw_usage_heatmap

    factors, rows, picks = family.factors, dict(family.factors), 1
    counts = {}
    for slot in results[0].choice:
        cands = learner.graph.num_candidates[slot]
        for f, names in factors.items():
            m = np.zeros((len(names), cands), dtype=np.int64)
            for t, r in enumerate(results):
                m[int(batch.info[f][t]), r.choice[slot]] += 1
            counts[(slot, f)] = m
    if candidate_slots(learner).shared:  # one bank for every slot: one panel, all values
        rows = {"primitive": tuple(f"{f}={v}" for f, names in factors.items() for v in names)}
        stacked = [np.concatenate([counts[(s, f)] for f in factors]) for s in results[0].choice]
        counts, picks = {("bank", "primitive"): sum(stacked)}, len(stacked)
    drawn = draw_usage_heatmap(counts, rows, out / "usage_heatmap.png", picks=picks)
    print("wrote usage_heatmap.png (rows and columns ordered by the matching)")
    truth = {f: batch.info[f].tolist() for f in factors}
    choices = {s: [r.choice[s] for r in results] for s in results[0].choice}
    purity = family_purity(learner, family, choices, truth)
    purity["heatmap"] = [
        {"slot": s, "factor": f, "rows": rows, "columns": cols, "accuracy": acc}
        for (s, f), (rows, cols, acc) in drawn.items()
    ]
    if restarts is not None:
        purity["restart_banks"] = restarts
    purity.update({"routed_by": by} if by else {})
    (out / "routing.json").write_text(json.dumps(purity, indent=2))
    print(
        f"wrote routing.json: joint NMI {purity['joint_nmi']:.3f}; "
        + "; ".join(
            f"{s} vs {r['factor']}: NMI {r['nmi']:.3f}, matched accuracy {r['accuracy']:.3f}"
            for s, r in purity["slots"].items()
        )
        + (
            f"; as a set: both {purity['as_set']['joint_accuracy']:.3f}"
            if "as_set" in purity
            else ""
        )
    )
