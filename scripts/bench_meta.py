"""Meta-iterations per second and peak memory of metacompose and the per-task peers.

    python scripts/bench_meta.py                                   # sinusoid and conv tables
    python scripts/bench_meta.py --section conv --tasks 8 --steps 1,5 --repeats 3 --flops
    python scripts/bench_meta.py --section conv --tasks 2 --steps 1,5,10,20,50 --impls ours
        --budget-mb 100000 --checkpoint --seconds 0 --min-iters 1    # memory vs inner steps
        [--mmap-threshold 131072]           # peak RSS of live memory, not glibc's hoarding
    python scripts/bench_meta.py --section sinusoid --seconds 3
    python scripts/bench_meta.py --section sinusoid --steps 1 --interleave --seconds 20
        # speed only, every implementation in one process (a loaded machine hits all alike)

Sections (second order unless ``--orders`` says otherwise):
    sinusoid: MLP 1-40-40-1, meta-batch 25, K=10 support, 10 query (the MAML sinusoid).
    conv:     MAML conv4 (64 filters, batch norm, 28x28x1), 5-way 1-shot, 15 query per class,
              meta-batch 32 (``--tasks``); random images (only the cost is measured).

Implementations (each in a fresh subprocess, so that its peak RSS is its own; "MB" is the peak RSS
minus the RSS just before the first meta-iteration; repetitions alternate between
implementations and the table shows medians):
    ours:     ``MetaLearner`` with default settings (``vectorize="auto"``) and the task chunks the
              trainer picks from its default memory budget (``data.memory_budget_mb``), one
              backward per chunk, as ``metacompose train`` accumulates them.
    vmap:     ``vectorize=True``, the whole meta-batch in one backward.
    l2l:      learn2learn's algorithm written out (``clone`` + ``adapt``: per task,
              ``autograd.grad(create_graph=True)`` on an ``nn.Module`` in NCHW, then the task's
              query loss ``.backward()``); runs everywhere, no peer needed.
    learn2learn: learn2learn itself, ``MAML(model, lr, first_order).clone()`` and ``adapt`` per
              task (when installed; learn2learn 0.2.0's sdist does not build on Python 3.11 as
              published: re-generate its Cython sources with Cython 3 first, then install it with
              ``--no-build-isolation``). Peers are imported before the set-up RSS is read.
    higher:   ``higher.innerloop_ctx`` per task (when installed).
    torchopt: ``torchopt.MetaSGD`` with ``extract_state_dict``/``recover_state_dict`` per task
              (when installed; second order only).
Every implementation times full meta-iterations: inner loop, query loss, meta-gradient, Adam step,
by default per CPU second of its worker (``--clock cpu``: one thread, so CPU time is the work done,
and other processes on a shared machine change it far less than wall time).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SECTIONS = {
    "sinusoid": {"tasks": 25, "shots": 10, "query": 10, "inner_lr": 0.01},
    "conv": {"tasks": 32, "ways": 5, "shots": 1, "query": 15, "filters": 64, "inner_lr": 0.4},
}
IMPLS = ("ours", "vmap", "l2l", "learn2learn", "higher", "torchopt")
PEERS = ("learn2learn", "higher", "torchopt")  # the implementations that need a peer installed


def make_batch(section: str, tasks: int):
    import torch

    from metacompose.tasks import SinusoidFamily, TaskBatch

    s = SECTIONS[section]
    g = torch.Generator().manual_seed(0)
    if section == "sinusoid":
        return SinusoidFamily().sample(tasks, shots=s["shots"], query=s["query"], generator=g)
    ways, k, q = s["ways"], s["shots"], s["query"]
    labels = torch.arange(ways)
    return TaskBatch(
        support_x=torch.randn(tasks, ways * k, 1, 28, 28, generator=g),
        support_y=labels.repeat_interleave(k).expand(tasks, -1).contiguous(),
        query_x=torch.randn(tasks, ways * q, 1, 28, 28, generator=g),
        query_y=labels.repeat_interleave(q).expand(tasks, -1).contiguous(),
    )


def ours_step(args, batch):
    """A meta-iteration of ``MetaLearner``: ``vmap`` whole, or default settings in task chunks."""
    import torch

    from metacompose.algorithms import InnerLoop, MetaLearner
    from metacompose.models import conv_graph, mlp_graph
    from metacompose.training.data import select_tasks
    from metacompose.training.hardware import (
        CPU_MEMORY_BUDGET_MB,
        auto_task_chunk,
        estimate_task_mb,
    )

    s = SECTIONS[args.section]
    conv = args.section == "conv"
    graph = conv_graph(filters=s["filters"], n_way=s["ways"]) if conv else mlp_graph()
    learner = MetaLearner(
        graph=graph,
        algorithm="fomaml" if args.order == 1 else "maml",
        loss="cross_entropy" if conv else "mse",
        checkpoint_inner=args.checkpoint,
        inner=InnerLoop(
            lr=s["inner_lr"], steps=args.steps, vectorize=True if args.impl == "vmap" else "auto"
        ),
    )
    tasks, chunk = batch.num_tasks, batch.num_tasks
    if args.impl == "ours":
        example = torch.cat([batch.support_x[0], batch.query_x[0]])[:4]
        mb = estimate_task_mb(
            graph,
            example,
            support=batch.support_x.shape[1],
            query=batch.query_x.shape[1],
            steps=args.steps,
            second_order=args.order == 2,
        )
        chunk = auto_task_chunk(tasks, mb, args.budget_mb or CPU_MEMORY_BUDGET_MB)
    parts = [select_tasks(batch, slice(i, i + chunk)) for i in range(0, tasks, chunk)]
    opt = torch.optim.Adam(learner.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad()
        for part in parts:
            (learner.meta_step(part).objective * (part.num_tasks / tasks)).backward()
        opt.step()

    return step, {"chunk": chunk}


def peer_model(section: str):
    from torch import nn

    s = SECTIONS[section]
    if section == "sinusoid":
        return nn.Sequential(
            nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1)
        )
    layers, c = [], 1
    for _ in range(4):
        f = s["filters"]
        layers += [
            nn.Conv2d(c, f, 3, padding=1),
            nn.BatchNorm2d(f, track_running_stats=False),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        c = f
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(s["filters"], s["ways"]))


def peer_step(args, batch):
    """A meta-iteration the way a per-task peer runs it: adapt a task, backward its query loss."""
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call

    if args.impl in PEERS:  # imported now, before the worker reads its set-up RSS (learn2learn
        importlib.import_module(args.impl)  # brings in gym: ~180 MB that is not meta-learning)
    model = peer_model(args.section)
    loss_fn = F.cross_entropy if args.section == "conv" else F.mse_loss
    lr, steps, fo, T = (
        SECTIONS[args.section]["inner_lr"],
        args.steps,
        args.order == 1,
        batch.num_tasks,
    )
    sx, sy, qx, qy = batch.support_x, batch.support_y, batch.query_x, batch.query_y
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def l2l() -> None:  # MAML.clone() + adapt(): autograd.grad, then a functional update
        params = dict(model.named_parameters())
        for t in range(T):
            fast = params
            for _ in range(steps):
                loss = loss_fn(functional_call(model, fast, (sx[t],)), sy[t])
                grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not fo)
                fast = {k: v - lr * g for (k, v), g in zip(fast.items(), grads)}
            (loss_fn(functional_call(model, fast, (qx[t],)), qy[t]) / T).backward()

    def higher_loop() -> None:
        import higher

        inner_opt = torch.optim.SGD(model.parameters(), lr=lr)
        detach = (lambda gs: [g.detach() for g in gs]) if fo else None
        for t in range(T):
            with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False) as (fm, dopt):
                for _ in range(steps):
                    dopt.step(loss_fn(fm(sx[t]), sy[t]), grad_callback=detach)
                (loss_fn(fm(qx[t]), qy[t]) / T).backward()

    def torchopt_loop() -> None:
        import torchopt

        inner_opt = torchopt.MetaSGD(model, lr=lr)
        state = torchopt.extract_state_dict(model)
        for t in range(T):
            for _ in range(steps):
                inner_opt.step(loss_fn(model(sx[t]), sy[t]))
            (loss_fn(model(qx[t]), qy[t]) / T).backward()
            torchopt.recover_state_dict(model, state)

    def learn2learn_loop() -> None:  # learn2learn itself: MAML.clone() + adapt() per task
        import learn2learn

        maml = learn2learn.algorithms.MAML(model, lr=lr, first_order=fo)
        for t in range(T):
            learner = maml.clone()
            for _ in range(steps):
                learner.adapt(loss_fn(learner(sx[t]), sy[t]))
            (loss_fn(learner(qx[t]), qy[t]) / T).backward()

    run = {
        "l2l": l2l,
        "learn2learn": learn2learn_loop,
        "higher": higher_loop,
        "torchopt": torchopt_loop,
    }[args.impl]

    def step() -> None:
        opt.zero_grad()
        run()
        opt.step()

    return step, {}


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = make_batch(args.section, args.tasks)
    build = ours_step if args.impl in ("ours", "vmap") else peer_step
    step, info = build(args, batch)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()  # warm-up
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < args.seconds or n < args.min_iters:
        step()
        n += 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    its = n / (cpu if args.clock == "cpu" else elapsed)
    out = {"its": its, "delta_mb": (peak - base_rss) / 1024, **info}
    if args.flops:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            step()
        out["gflop"] = counter.get_total_flops() / 1e9
    print(json.dumps(out))


def interleaved_worker(args: argparse.Namespace) -> None:
    """Speed only: every implementation in THIS process, timed in alternating blocks of about
    ``--seconds / --rounds`` each (the order rotates every round), so load on a shared machine hits
    all of them alike. Prints ``{impl: it/s}``."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = make_batch(args.section, args.tasks)
    impls = args.impls.split(",")
    steps = {}
    for impl in impls:
        sub = argparse.Namespace(**{**vars(args), "impl": impl})
        steps[impl] = (ours_step if impl in ("ours", "vmap") else peer_step)(sub, batch)[0]
    block = {}
    for impl, step in steps.items():
        step()  # warm-up
        start = time.process_time()
        step()
        one = max(time.process_time() - start, 1e-6)
        block[impl] = max(1, round(args.seconds / args.rounds / one))
    cpu, done = dict.fromkeys(impls, 0.0), dict.fromkeys(impls, 0)
    for r in range(args.rounds):
        for impl in impls[r % len(impls) :] + impls[: r % len(impls)]:
            start = time.process_time()
            for _ in range(block[impl]):
                steps[impl]()
            cpu[impl] += time.process_time() - start
            done[impl] += block[impl]
    print(json.dumps({impl: done[impl] / cpu[impl] for impl in impls}))


def interleaved_table(args: argparse.Namespace) -> None:
    from metacompose.progress import say

    impls = available((args.impls or ",".join(IMPLS)).split(","))
    say(
        f"{args.section}: meta-batch {args.tasks}, torch.set_num_threads({args.threads}), all "
        f"implementations in ONE process, {args.rounds} alternating rounds of ~{args.seconds:g} s "
        "in all per implementation; it/s per CPU second (speed only: memory needs the per-process "
        "table)"
    )
    head = f"{'order':>5} {'inner':>5} | " + " | ".join(f"{i:>{max(9, len(i))}}" for i in impls)
    head += " | " + " ".join(f"{'ours/' + i:>{ratio_width(i)}}" for i in impls if i != "ours")
    say(head)
    say("-" * len(head))
    for order in (int(o) for o in str(args.orders).split(",")):
        for n in (int(s) for s in str(args.steps).split(",")):
            used = [i for i in impls if not (order == 1 and i == "torchopt")]
            cmd = [
                sys.executable,
                __file__,
                "--interleaved-worker",
                f"--section={args.section}",
                f"--impls={','.join(used)}",
                f"--orders={order}",
                f"--steps={n}",
                f"--tasks={args.tasks}",
                f"--threads={args.threads}",
                f"--seconds={args.seconds}",
                f"--rounds={args.rounds}",
                f"--budget-mb={args.budget_mb or 0}",
                *(["--checkpoint"] if args.checkpoint else []),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                say(f"  failed: {done.stderr.strip().splitlines()[-1] if done.stderr else ''}")
                continue
            its = json.loads(done.stdout.strip().splitlines()[-1])
            cells = [f"{its[i]:>{max(9, len(i))}.3g}" if i in its else f"{'-':>{max(9, len(i))}}"
                     for i in impls]  # fmt: skip
            ratios = [ratio_cell(its.get("ours"), its.get(i), i) for i in impls if i != "ours"]
            say(f"{order:>5} {n:>5} | " + " | ".join(cells) + " | " + " ".join(ratios))


def run_one(args: argparse.Namespace, impl: str, order: int, steps: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        f"--section={args.section}",
        f"--impl={impl}",
        f"--orders={order}",
        f"--steps={steps}",
        f"--tasks={args.tasks}",
        f"--threads={args.threads}",
        f"--seconds={args.seconds}",
        f"--clock={args.clock}",
        f"--min-iters={args.min_iters}",
        f"--budget-mb={args.budget_mb or 0}",
        *(["--flops"] if args.flops and impl == "ours" else []),
        *(["--checkpoint"] if args.checkpoint else []),
    ]
    env = dict(os.environ)
    if args.mmap_threshold:  # glibc: a fixed threshold stops the heap keeping freed large blocks
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratio_width(impl: str) -> int:
    """Width of the ``ours/<impl>`` column."""
    return max(12, len(f"ours/{impl}"))


def ratio_cell(ours: float | None, other: float | None, impl: str) -> str:
    """``ours / other`` as ``1.23x`` in the ``ours/<impl>`` column, ``-`` when either is missing."""
    text = f"{ours / other:.2f}x" if ours is not None and other is not None else "-"
    return f"{text:>{ratio_width(impl)}}"


def installed(impl: str) -> bool:
    return impl not in PEERS or importlib.util.find_spec(impl) is not None


def available(wanted: list[str]) -> list[str]:
    """The wanted implementations that can run here; says which peers are not installed."""
    from metacompose.progress import say

    missing = [i for i in wanted if not installed(i)]
    if missing:
        say(f"not installed, left out: {', '.join(missing)}")
    return [i for i in wanted if installed(i)]


def table(args: argparse.Namespace) -> None:
    from metacompose.progress import say

    wanted = args.impls or ",".join(i for i in IMPLS if args.section != "conv" or i != "vmap")
    impls = available(wanted.split(","))
    steps = [int(s) for s in str(args.steps).split(",")]
    orders = [int(o) for o in str(args.orders).split(",")]
    say(
        f"{args.section}: meta-batch {args.tasks}, torch.set_num_threads({args.threads}), "
        f"medians of {args.repeats} alternating repetitions; it/s per {args.clock} second "
        "(MB = peak RSS above set-up)"
    )
    head = f"{'order':>5} {'inner':>5} | " + " | ".join(f"{i:>17}" for i in impls)
    head += " | " + " ".join(f"{'ours/' + i:>{ratio_width(i)}}" for i in impls if i != "ours")
    say(head)
    say("-" * len(head))
    for order in orders:
        for n in steps:
            runs = {i: [] for i in impls}
            for _ in range(args.repeats):
                for i in impls:
                    if order == 1 and i == "torchopt":
                        continue
                    runs[i].append(run_one(args, i, order, n))
            med = {}
            for i, rs in runs.items():
                good = [r for r in rs if "its" in r]
                if good:
                    med[i] = {
                        k: statistics.median(r[k] for r in good) for k in good[0] if k != "error"
                    }
                elif rs:
                    say(f"  {i}: {rs[0]['error']}")
            cells = [
                f"{med[i]['its']:>8.3g} {med[i]['delta_mb']:>6.0f}MB" if i in med else f"{'-':>17}"
                for i in impls
            ]
            its = {i: m["its"] for i, m in med.items()}
            ratios = [ratio_cell(its.get("ours"), its.get(i), i) for i in impls if i != "ours"]
            extra = ""
            if "ours" in med:
                extra = f"  (ours: chunks of {med['ours']['chunk']:.0f} tasks"
                if "gflop" in med["ours"]:
                    g = med["ours"]["gflop"]
                    extra += f", {g:.1f} GFLOP/it, {g * med['ours']['its']:.1f} GFLOP/s"
                extra += ")"
            say(f"{order:>5} {n:>5} | " + " | ".join(cells) + " | " + " ".join(ratios) + extra)


def main() -> None:
    from metacompose.cli.args import (
        at_least,
        inner_steps,
        int_list,
        non_negative_float,
        non_negative_int,
        positive_float,
        positive_int,
    )
    from metacompose.cli.parser import OneLineParser

    p = OneLineParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--section", default="all", choices=[*SECTIONS, "all"], help="sinusoid, conv or all"
    )
    p.add_argument(
        "--tasks", type=positive_int, default=None, help="meta-batch (default: the section's)"
    )
    p.add_argument("--steps", type=int_list(inner_steps), default="1,5", help="inner-step counts")
    p.add_argument(
        "--orders",
        type=int_list(at_least(1, 2)),
        default="2",
        help="1 (first order), 2 (second order) or 1,2",
    )
    p.add_argument(
        "--impls",
        default=None,
        help=f"implementations to run (default: {','.join(IMPLS)}; conv without vmap, which needs "
        "~4.5 GB and ~10 s per meta-iteration at meta-batch 32)",
    )
    p.add_argument(
        "--threads", type=positive_int, default=1, help="torch.set_num_threads in each worker"
    )
    p.add_argument("--seconds", type=positive_float, default=2.0, help="timed seconds per run")
    p.add_argument(
        "--clock",
        default="cpu",
        choices=["cpu", "wall"],
        help="it/s per CPU second of the worker (robust on a shared machine) or per wall second",
    )
    p.add_argument(
        "--min-iters", type=positive_int, default=3, help="timed meta-iterations per run, at least"
    )
    p.add_argument(
        "--repeats", type=positive_int, default=1, help="alternating repetitions per config"
    )
    p.add_argument(
        "--budget-mb", type=non_negative_float, default=0, help="ours: memory budget (0: default)"
    )
    p.add_argument("--flops", action="store_true", help="count ours' FLOPs per meta-iteration")
    p.add_argument("--checkpoint", action="store_true", help="ours: checkpoint_inner")
    p.add_argument(
        "--mmap-threshold",
        type=non_negative_int,
        default=0,
        help="glibc MALLOC_MMAP_THRESHOLD_ of the workers in bytes (0: glibc's dynamic default, "
        "whose rising threshold keeps freed large blocks in the heap, so peak RSS also counts "
        "allocator hoarding; 131072 makes it track live memory)",
    )
    p.add_argument(
        "--interleave",
        action="store_true",
        help="speed only: all implementations in one process, alternating (robust to load)",
    )
    p.add_argument(
        "--rounds", type=positive_int, default=10, help="--interleave: alternating rounds"
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--interleaved-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl", default="ours", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker or args.interleaved_worker:
        args.steps, args.order = int(args.steps), int(args.orders)
        (worker if args.worker else interleaved_worker)(args)
        return
    for section in SECTIONS if args.section == "all" else [args.section]:
        sub = argparse.Namespace(**vars(args))
        sub.section, sub.tasks = section, args.tasks or SECTIONS[section]["tasks"]
        (interleaved_table if args.interleave else table)(sub)


if __name__ == "__main__":
    from metacompose.cli.script_errors import run_script

    run_script(main)
