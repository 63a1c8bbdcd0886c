"""Meta-iterations per second and peak memory of the MAML family on the sinusoid config.

    python scripts/bench_meta.py                  # the full table (~2 min)
    python scripts/bench_meta.py --threads 2 --seconds 3

For each inner-step count (1, 5, 10), first and second order, it times full meta-iterations (inner
loop on 25 tasks, query loss, meta-gradient, Adam step) with the vectorised inner loop (``vmap``
over tasks) and with a per-task Python loop (the way learn2learn, higher and TorchOpt run a
meta-batch). Each configuration runs in a fresh subprocess so that its peak RSS is its own; "peak
delta" is the peak RSS minus the RSS just before the first meta-iteration.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def worker(args: argparse.Namespace) -> None:
    import torch

    from metacompose.algorithms import MetaLearner
    from metacompose.models import mlp_graph
    from metacompose.tasks import SinusoidFamily

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    learner = MetaLearner(
        graph=mlp_graph(in_features=1, hidden=[40, 40], out_features=1),
        algorithm="fomaml" if args.order == 1 else "maml",
        inner_lr=0.01,
        inner_steps=args.steps,
        vectorize=args.mode == "vmap",
        checkpoint_inner=args.checkpoint,
    )
    opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    batches = [SinusoidFamily().sample(25, shots=10, query=10, generator=g) for _ in range(8)]

    def step(i: int) -> None:
        opt.zero_grad()
        learner.meta_step(batches[i % len(batches)]).objective.backward()
        opt.step()

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(3):
        step(i)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds or n < 3:
        step(n)
        n += 1
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {"its": n / elapsed, "peak_mb": peak / 1024, "delta_mb": (peak - base_rss) / 1024}
        )
    )


def run_one(mode: str, order: int, steps: int, threads: int, seconds: float) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        f"--mode={mode}",
        f"--order={order}",
        f"--steps={steps}",
        f"--threads={threads}",
        f"--seconds={seconds}",
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads in each worker")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per configuration")
    p.add_argument("--steps", default="1,5,10", help="inner-step counts")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="vmap", help=argparse.SUPPRESS)
    p.add_argument("--order", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.steps = int(args.steps)
        worker(args)
        return
    from metacompose.progress import progress, say

    print(f"sinusoid MLP 1-40-40-1, meta-batch 25, K=10, torch.set_num_threads({args.threads})")
    header = (
        f"{'order':>5} {'inner':>5} | {'vmap it/s':>9} {'loop it/s':>9} {'speed-up':>8} | "
        f"{'vmap peak MB':>12} {'delta MB':>8} | {'loop peak MB':>12} {'delta MB':>8}"
    )
    print(header)
    print("-" * len(header))
    steps = [int(s) for s in args.steps.split(",")]
    runs = [(order, n) for order in (1, 2) for n in steps]
    with progress(desc="bench_meta", total=2 * len(runs), unit="run") as bar:
        for order, n in runs:
            v = run_one("vmap", order, n, args.threads, args.seconds)
            bar.update(1)
            loop = run_one("loop", order, n, args.threads, args.seconds)
            bar.update(1)
            say(
                f"{order:>5} {n:>5} | {v['its']:>9.1f} {loop['its']:>9.1f} "
                f"{v['its'] / loop['its']:>7.1f}x | {v['peak_mb']:>12.0f} {v['delta_mb']:>8.1f} | "
                f"{loop['peak_mb']:>12.0f} {loop['delta_mb']:>8.1f}"
            )


if __name__ == "__main__":
    main()
