"""Reproduce the MAML paper's sinusoid experiment for every algorithm and print a results table.

    python scripts/repro_sinusoid.py                      # 70,000 meta-iterations each (~1 h, 1 core)
    python scripts/repro_sinusoid.py --steps 2000         # quick look (~1 min each)

Each algorithm meta-trains ``configs/sinusoid.yaml`` (with the per-algorithm overrides below), then
adapts to 600 fresh meta-test tasks (K=10) for 10 inner steps; the table gives the mean query MSE with
95% intervals. Results also go to ``<out>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from metacompose.cli.args import meta_steps, non_negative_int, positive_int
from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import run_script
from metacompose.config import ConfigError, load_config
from metacompose.evaluate import evaluate, load_checkpoint
from metacompose.progress import progress, say

# Per-algorithm overrides of configs/sinusoid.yaml. Reptile needs several inner steps per task
# (with one step it is plain joint training), as in Nichol et al. (2018).
ALGOS = {
    "maml": [],
    "fomaml": ["algo.name=fomaml"],
    "metasgd": ["algo.name=metasgd"],
    "anil": ["algo.name=anil"],
    "reptile": ["algo.name=reptile", "algo.inner_steps=5"],
    # Extra row (not run by default): more inner steps in training, still 10 at evaluation.
    "fomaml5": ["algo.name=fomaml", "algo.inner_steps=5"],
}
DEFAULT_ALGOS = ("maml", "fomaml", "metasgd", "anil", "reptile")


def algo_list(text: str) -> list[str]:
    """``--algos``: comma-separated names of :data:`ALGOS`, checked before any training."""
    names = [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in names if a not in ALGOS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: unknown {', '.join(map(repr, bad))}; choose from {', '.join(ALGOS)}"
            if bad
            else f"{text!r}: no algorithm named"
        )
    return names


def main() -> None:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default="configs/sinusoid.yaml")
    p.add_argument("--steps", type=meta_steps, default=70000, help="meta-iterations per algorithm")
    p.add_argument(
        "--algos",
        type=algo_list,
        default=list(DEFAULT_ALGOS),
        help=f"comma-separated, of {list(ALGOS)}",
    )
    p.add_argument("--tasks", type=positive_int, default=600, help="meta-test tasks")
    p.add_argument("--eval-steps", type=non_negative_int, default=10)
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--out", default="runs/repro_sinusoid")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    algos = args.algos
    with progress(algos, desc="repro_sinusoid", unit="algo") as bar:
        for algo in bar:
            overrides = [
                *ALGOS[algo],
                f"trainer.max_steps={args.steps}",
                f"out_dir={out}",
                f"name={algo}-{args.steps}",
            ]
            try:
                cfg = load_config(args.config, overrides)
            except ConfigError as e:  # --steps and --config reach the config: one line
                p.exit(2, f"{p.prog}: error: {e}\n")
            ckpt = out / f"{algo}-{args.steps}" / "checkpoints" / "last.ckpt"
            seconds = None
            if not ckpt.exists():
                from metacompose.training import train  # Lightning: only when a run is trained

                result = train(cfg, config_name="sinusoid")
                seconds = result.seconds
            learner, cfg, family = load_checkpoint(ckpt)
            ev = evaluate(
                learner, family, n_tasks=args.tasks, steps=args.eval_steps, shots=10, seed=1
            )
            results[algo] = {
                "meta_iterations": args.steps,
                "train_seconds": seconds,
                **ev.to_json_dict(),
            }
            out.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=2))
            say(
                f"[{time.strftime('%H:%M:%S')}] {algo}: mse@{args.eval_steps} = "
                f"{ev.mean[-1]:.3f} ± {ev.ci95[-1]:.3f}"
            )
    print_table(results, args.eval_steps, args.threads)


def print_table(results: dict, steps: int, threads: int) -> None:
    print(
        f"\nsinusoid, K=10, query MSE after 0 / 1 / {steps} inner steps, "
        f"mean ± 95% CI over meta-test tasks (torch threads={threads})"
    )
    print(
        f"{'algorithm':<10} {'iters':>7} {'train s':>8} {'step 0':>15} {'step 1':>15} "
        f"{f'step {steps}':>15}"
    )
    for algo, r in results.items():
        cells = [f"{r['mean'][i]:.3f} ± {r['ci95'][i]:.3f}" for i in (0, 1, -1)]
        secs = f"{r['train_seconds']:.0f}" if r["train_seconds"] else "-"
        print(
            f"{algo:<10} {r['meta_iterations']:>7} {secs:>8} {cells[0]:>15} {cells[1]:>15} "
            f"{cells[2]:>15}"
        )


if __name__ == "__main__":
    run_script(main)
