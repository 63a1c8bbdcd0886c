"""Throughput and peak memory of meta-training at different scales; prints one table per question.

    python scripts/bench_scale.py            # all three tables (~3 min on 2 CPU cores)
    python scripts/bench_scale.py --only ddp # or: inner, chunk, tax

Every configuration runs in a FRESH subprocess (peak RSS is process-wide and never goes down), which
reports meta-iterations/s, its peak RSS, and the peak RSS *increase* over the process's RSS just
before the measured work (the memory the meta-training itself needs; imports and the model are
excluded). With a GPU, ``--device cuda`` reports CUDA max-allocated memory as well.

1. ``ddp``:   the sinusoid config through ``train()``: 1 process vs ``strategy=ddp, devices=2`` (gloo,
              CPU). Iterations/s are meta-iterations of the whole job (every rank takes half the tasks).
2. ``inner``: second-order MAML on a 4-layer conv net (28x28 glyph-sized inputs, 5-way 5-shot), inner
              steps 1/5/10, with and without activation checkpointing (``algo.checkpoint_inner``).
3. ``chunk``: a 32-task meta-batch unchunked, with chunked vmap (``algo.chunk_size=8``), and with
              meta-gradient chunks (``data.task_chunk_size=8``: one backward per chunk, accumulated).
4. ``tax``:   ``train()`` on the sinusoid config (default logging/validation/checkpoint cadence) vs
              the same meta-steps in a plain loop, interleaved in blocks in ONE process, and the
              start-up to the first meta-step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from metacompose.cli.args import meta_steps, non_negative_int, positive_int
from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import run_script
from metacompose.progress import say, track

STARTED = time.perf_counter()  # start-up is measured from here (before torch is imported)
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def clock() -> float:
    """CPU seconds of this process (one torch thread): other load on a shared machine changes it far
    less than wall time."""
    return time.process_time()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------ children
def child_train(args: argparse.Namespace) -> dict:
    """``train()`` on the sinusoid config; rank 0 times steps after a warm-up."""
    import lightning as L
    import torch

    from metacompose.config import load_config
    from metacompose.training import train

    torch.set_num_threads(1)

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.t0 = self.base = None

        def on_train_batch_start(self, trainer, pl_module, *a) -> None:
            if trainer.global_step == 0 and not hasattr(self, "startup"):
                self.startup = time.perf_counter() - STARTED
                self.per_call = pl_module.steps_per_call
            if trainer.global_step == args.warmup and self.t0 is None:
                self.t0, self.base = clock(), rss_mib()

        def on_train_batch_end(self, trainer, *a) -> None:
            # Steady state: the clock stops after the last meta-step, before the final validation
            # and checkpoint that end every fit (periodic ones inside the window are counted).
            if trainer.global_step == trainer.max_steps:
                self.seconds = clock() - self.t0

    timer = Clock()
    cfg = load_config(REPO / "configs" / "sinusoid.yaml", args.overrides)
    train(cfg, callbacks=[timer])
    steps = cfg.trainer.max_steps - args.warmup
    rank = int(os.environ.get("LOCAL_RANK", 0))
    out = {"it_s": steps / timer.seconds, "peak_rss": peak_rss_mib(), "base_rss": timer.base}
    out["startup"] = timer.startup
    Path(f"{args.result}.rank{rank}").write_text(json.dumps(out))
    return out


def child_tax(args: argparse.Namespace) -> dict:
    """``train()`` and the raw loop interleaved in ONE process: after the warm-up, every ``block``
    meta-steps of ``train()`` (timed from one block end to the next, Lightning's work between steps
    included) are followed by ``block`` raw-loop steps (a second learner built from the same config,
    its own stream and optimizer) run inside a callback and timed apart. Load on a shared machine
    hits both alike; the ratio is the trainer's tax. Start-up: wall seconds from the process start
    to ``import torch`` done, to ``import lightning`` done, and to the first meta-step."""
    import torch

    torch_s = time.perf_counter() - STARTED
    import lightning as L

    lightning_s = time.perf_counter() - STARTED

    from metacompose.config import load_config
    from metacompose.training import train
    from metacompose.training.guard import guarded_meta_step
    from metacompose.training.run import build_run

    torch.set_num_threads(1)
    cfg = load_config(REPO / "configs" / "sinusoid.yaml", args.overrides)
    module, data, _ = build_run(cfg)
    data.train_dataloader()
    stream = data.train_stream  # meta-batch by meta-batch, whatever trainer.steps_per_call is
    opt = module.configure_optimizers()
    raw_step = [0]

    def raw_block(n: int) -> float:
        start = clock()
        for _ in range(n):
            opt.zero_grad()
            guarded_meta_step(
                module.learner, stream.item(raw_step[0]), step=raw_step[0]
            ).objective.backward()
            opt.step()
            raw_step[0] += 1
        return clock() - start

    class Interleave(L.Callback):
        # A Lightning batch may hold several meta-iterations (trainer.steps_per_call): blocks are
        # counted in meta-iterations (global_step), each followed by as many raw-loop steps.
        def __init__(self) -> None:
            self.mark: float | None = None
            self.mark_step = 0
            self.train_s = self.raw_s = 0.0
            self.train_n = self.raw_n = 0

        def on_train_batch_start(self, trainer, pl_module, *a) -> None:
            if trainer.global_step == 0 and not hasattr(self, "startup"):
                self.startup = time.perf_counter() - STARTED
                self.per_call = pl_module.steps_per_call

        def on_train_batch_end(self, trainer, *a) -> None:
            step = trainer.global_step
            if step < args.warmup or (self.mark is not None and step - self.mark_step < args.block):
                return
            if self.mark is not None:
                self.train_s += clock() - self.mark
                self.train_n += step - self.mark_step
            if step < trainer.max_steps:
                self.raw_s += raw_block(args.block)
                self.raw_n += args.block
            self.mark, self.mark_step = clock(), step

    raw_block(args.warmup)
    timer = Interleave()
    train(cfg, callbacks=[timer])
    out = {
        "train_it_s": timer.train_n / timer.train_s,
        "raw_it_s": timer.raw_n / timer.raw_s,
        "startup": timer.startup,
        "per_call": timer.per_call,
        "torch_s": torch_s,
        "lightning_s": lightning_s,
    }
    Path(args.result).write_text(json.dumps(out))
    return out


def child_meta(args: argparse.Namespace) -> dict:
    """Direct meta-steps of a conv learner (the LightningModule's work without the trainer)."""
    import torch

    from metacompose.algorithms import InnerLoop, MetaLearner
    from metacompose.models import conv_graph
    from metacompose.training.guard import guarded_meta_step

    torch.set_num_threads(1)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    n_way, shots, size = 5, 5, 28
    graph = conv_graph(in_channels=1, image_size=size, n_way=n_way, filters=args.filters, depth=4)
    learner = MetaLearner(
        graph=graph,
        algorithm="maml",
        loss="cross_entropy",
        checkpoint_inner=args.checkpoint,
        inner=InnerLoop(lr=0.1, steps=args.inner_steps, chunk_size=args.vmap_chunk),
    ).to(dev)
    t, k = args.tasks, n_way * shots
    g = torch.Generator().manual_seed(1)
    x = torch.rand(t, 2 * k, 1, size, size, generator=g).to(dev)
    y = torch.arange(n_way).repeat_interleave(shots).repeat(t, 2).to(dev)
    from metacompose.tasks import TaskBatch

    batch = TaskBatch(support_x=x[:, :k], support_y=y[:, :k], query_x=x[:, k:], query_y=y[:, k:])
    opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
    chunk = args.grad_chunk or t
    from metacompose.training import select_tasks

    def iteration() -> None:
        opt.zero_grad()
        for start in range(0, t, chunk):  # meta-gradient chunks: one backward each
            part = select_tasks(batch, slice(start, start + chunk))
            (guarded_meta_step(learner, part).objective * (chunk / t)).backward()
        opt.step()

    base = rss_mib()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.iters):
        iteration()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    out = {
        "it_s": args.iters / (time.perf_counter() - start),
        "peak_rss": peak_rss_mib(),
        "base_rss": base,
    }
    if dev.type == "cuda":
        out["cuda_max_alloc"] = torch.cuda.max_memory_allocated() / 2**20
    Path(args.result).write_text(json.dumps(out))
    return out


# ------------------------------------------------------------------------------------ parent
def spawn(argv: list[str], timeout: float = 900) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        cmd = [sys.executable, __file__, "--result", str(result), *argv]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
        files = sorted(Path(tmp).glob("result.json*"))
        return [json.loads(f.read_text()) for f in files]


def row(name: str, results: list[dict]) -> str:
    it_s = results[0]["it_s"]
    peak = max(r["peak_rss"] for r in results)
    extra = max(r["peak_rss"] - r["base_rss"] for r in results)
    total = sum(r["peak_rss"] for r in results)
    cuda = results[0].get("cuda_max_alloc")
    cuda_s = f"{cuda:>10.1f}" if cuda is not None else f"{'-':>10}"
    return f"{name:<34} {it_s:>8.2f} {peak:>10.0f} {total:>10.0f} {extra:>10.1f} {cuda_s}"


HEADER = (
    f"{'configuration':<34} {'it/s':>8} {'peakRSS':>10} {'sumRSS':>10} {'+RSS':>10} {'cudaMax':>10}"
    "\n" + f"{'':<34} {'':>8} {'MiB/proc':>10} {'MiB':>10} {'MiB':>10} {'MiB':>10}"
)


def bench_ddp(steps: int) -> None:
    print(f"\n## 1 process vs DDP (gloo, CPU): sinusoid MAML, meta-batch 24, {steps} steps")
    print(HEADER)
    common = [
        f"trainer.max_steps={steps}",
        "data.meta_batch_size=24",
        "data.sharding=global",
        f"trainer.val_check_interval={steps}",
        f"trainer.checkpoint_every_n_steps={steps}",
        "trainer.enable_progress_bar=false",
        "trainer.logger=none",
        "data.val_tasks=24",
    ]
    runs = [
        ("1 process", []),
        ("ddp, 2 processes", ["trainer.strategy=ddp", "trainer.devices=2"]),
    ]
    with tempfile.TemporaryDirectory() as out:
        for name, extra in track(runs, desc="bench_scale: ddp", unit="run"):
            ov = [*common, *extra, f"out_dir={out}", f"name={name.replace(' ', '_').strip(',')}"]
            say(row(name, spawn(["--child", "train", "--warmup", "20", *ov])))


def bench_tax(steps: int, repeats: int, block: int) -> None:
    print(
        f"\n## trainer tax: the sinusoid config through train() vs its meta-steps in a plain loop, "
        f"interleaved in one process ({block}-step blocks, {steps} steps each), {repeats} "
        "processes; it/s per CPU second; start-up: wall seconds from the process start to torch "
        "imported, to lightning imported, to the first meta-step of train(); steps/call: the meta-steps "
        "per Lightning batch trainer.steps_per_call=auto chose"
    )
    print(
        f"{'process':<10} {'raw it/s':>9} {'train() it/s':>13} {'ratio':>7} {'torch s':>8} "
        f"{'+lightning s':>13} {'1st step s':>11} {'steps/call':>11}"
    )
    common = [f"trainer.max_steps={steps}", "trainer.enable_progress_bar=false"]
    ratios = []
    with tempfile.TemporaryDirectory() as out:
        for r in track(range(repeats), desc="bench_scale: tax", unit="repeat"):
            ov = [*common, f"out_dir={out}", f"name=tax{r}"]
            argv = ["--child", "tax", "--warmup", "100", "--block", str(block), *ov]
            (res,) = spawn(argv)
            ratios.append(res["train_it_s"] / res["raw_it_s"])
            say(
                f"{r:<10} {res['raw_it_s']:>9.1f} {res['train_it_s']:>13.1f} {ratios[-1]:>7.3f} "
                f"{res['torch_s']:>8.2f} {res['lightning_s']:>13.2f} {res['startup']:>11.2f} "
                f"{res['per_call']:>11}"
            )
    say(f"train() / raw loop: median {statistics.median(ratios):.3f}")


def bench_inner(args: argparse.Namespace) -> None:
    print(
        f"\n## inner steps x activation checkpointing: conv4x{args.filters}, 28x28, 5-way 5-shot, "
        f"{args.tasks} tasks, second order"
    )
    print(HEADER)
    runs = [(steps, ckpt) for steps in (1, 5, 10) for ckpt in (False, True)]
    for steps, ckpt in track(runs, desc="bench_scale: inner", unit="run"):
        argv = ["--child", "meta", "--inner-steps", str(steps), "--tasks", str(args.tasks)]
        argv += ["--filters", str(args.filters), "--device", args.device, "--iters", "3"]
        argv += ["--checkpoint"] if ckpt else []
        name = f"inner_steps={steps:<2} checkpoint_inner={ckpt}"
        say(row(name, spawn(argv)))


def bench_chunk(args: argparse.Namespace) -> None:
    tasks = 32
    print(
        f"\n## chunking: conv4x{args.filters}, {tasks} tasks, 1 inner step, second order "
        "(+RSS should scale with the chunk)"
    )
    print(HEADER)
    runs = [
        ("unchunked", []),
        ("vmap chunk_size=8", ["--vmap-chunk", "8"]),
        ("task_chunk_size=8 (grad chunks)", ["--grad-chunk", "8"]),
        ("task_chunk_size=4 (grad chunks)", ["--grad-chunk", "4"]),
    ]
    for name, extra in track(runs, desc="bench_scale: chunk", unit="run"):
        argv = ["--child", "meta", "--inner-steps", "1", "--tasks", str(tasks), "--iters", "3"]
        argv += ["--filters", str(args.filters), "--device", args.device, *extra]
        say(row(name, spawn(argv)))


def main() -> None:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", choices=["ddp", "inner", "chunk", "tax"], default=None)
    p.add_argument("--tax-steps", type=meta_steps, default=2100)
    p.add_argument(
        "--block", type=positive_int, default=50, help="interleaving block of the tax table"
    )
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--ddp-steps", type=meta_steps, default=400)
    p.add_argument("--tasks", type=positive_int, default=4, help="tasks of the inner-steps table")
    p.add_argument("--filters", type=positive_int, default=32)
    p.add_argument("--device", default="cpu")
    # child mode (one configuration per fresh process)
    p.add_argument("--child", choices=["train", "meta", "tax"], default=None)
    p.add_argument("--result", default=None)
    p.add_argument("--warmup", type=non_negative_int, default=20)
    p.add_argument("--inner-steps", type=positive_int, default=1)
    p.add_argument("--checkpoint", action="store_true")
    p.add_argument("--vmap-chunk", type=positive_int, default=None)
    p.add_argument("--grad-chunk", type=positive_int, default=None)
    p.add_argument("--iters", type=positive_int, default=3)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    if args.child == "train":
        child_train(args)
        return
    if args.child == "meta":
        child_meta(args)
        return
    if args.child == "tax":
        child_tax(args)
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPU cores, one torch thread/process")
    if args.only in (None, "ddp"):
        bench_ddp(args.ddp_steps)
    if args.only in (None, "inner"):
        bench_inner(args)
    if args.only in (None, "chunk"):
        bench_chunk(args)
    if args.only in (None, "tax"):
        bench_tax(args.tax_steps, args.repeats, args.block)


if __name__ == "__main__":
    run_script(main)
