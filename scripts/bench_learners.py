"""Meta-learner families on the sinusoid, same seeds, budget and meta-test tasks.

MAML, Meta-SGD, the in-context transformer, the CNP and the learned optimizer are each meta-trained
for the same wall-clock budget (plain loop: ``learner.meta_step`` + Adam, the math of
``metacompose train``) from their shipped configs; Adam and SGD inner loops (no meta-learned
update, step size tuned on meta-validation tasks) start from the MAML init; the oracle fits
``a sin x + b cos x`` (= A sin(x - phase), linear in (a, b)) to the support set by exact least
squares. Every method meets the same seeded meta-test tasks (in distribution, and out of
distribution: amplitude [5, 10], phase [pi, 2 pi]). The learned optimizer meta-trains its update rule
from the MAML init (learn_init=false), so it, Adam and SGD differ only in the update. Then its
targets: steps to reach tuned Adam's 100-step loss, 10x its training horizon, and the rule alone on
fresh networks (random init): the trained architecture and a 2x wider tanh network.

    python scripts/bench_learners.py --budget 180 --tasks 400 --json learners.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from metacompose.algorithms.inner_loop import broadcast_tasks, query_losses
from metacompose.algorithms.learned_inner_loop import adam_update, sgd_update, unroll
from metacompose.build import build_learner
from metacompose.config import load_config
from metacompose.models import mlp_graph
from metacompose.report.curves import SAMPLE_CHUNK, metric_curves
from metacompose.stats import ci95_over_tasks
from metacompose.tasks import SinusoidFamily, derive_seed
from metacompose.tasks.base import TaskBatch

ROOT = Path(__file__).resolve().parents[1]
LEARNERS = {
    "maml": ("sinusoid.yaml", []),
    "metasgd": ("sinusoid.yaml", ["algo.name=metasgd"]),
    "incontext": ("sinusoid_incontext.yaml", []),
    "cnp": ("sinusoid_cnp.yaml", []),
    # the update rule alone, meta-trained from the MAML init (compared with Adam/SGD from it)
    "learned_opt": ("sinusoid_learned_opt.yaml", ["algo.args.learn_init=false"]),
}
LR_GRID = {"adam": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "sgd": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]}
RULES = {"adam": adam_update, "sgd": sgd_update}


def meta_train(name: str, budget: float, max_steps: int, seed: int, init=None):
    """Meta-train one learner for ``budget`` seconds (or ``max_steps``); returns it and stats.

    ``init``: a graph state dict to start from (the learned optimizer starts at the MAML init)."""
    path, overrides = LEARNERS[name]
    cfg = load_config(ROOT / "configs" / path, [f"seed={seed}", *overrides])
    family = SinusoidFamily()
    learner = build_learner(cfg, family)
    if init is not None:
        learner.graph.load_state_dict(init)
    opt = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=cfg.optim.lr)
    g = torch.Generator().manual_seed(derive_seed(seed, "train", "bench_learners"))
    t0, step = time.perf_counter(), 0
    while time.perf_counter() - t0 < budget and step < max_steps:
        batch = family.sample(cfg.data.meta_batch_size, shots=cfg.task.shots,
                              query=cfg.task.query, generator=g, split="train")  # fmt: skip
        opt.zero_grad()
        learner.meta_step(batch, step=step).objective.backward()
        opt.step()
        step += 1
    learner.eval()
    return learner, {"iterations": step, "train_s": time.perf_counter() - t0}


def timed_curves(learner, family, **kw):
    t0 = time.perf_counter()
    c = metric_curves(learner, family, **kw)
    return c, (time.perf_counter() - t0) / kw["n_tasks"]


def same_tasks(family, *, split, n_tasks, shots, seed) -> TaskBatch:
    """The tasks :func:`metric_curves` draws for these arguments (query 10)."""
    g = torch.Generator().manual_seed(derive_seed(seed, split, "report", shots, 10))
    sizes = [min(SAMPLE_CHUNK, n_tasks - i) for i in range(0, n_tasks, SAMPLE_CHUNK)]
    return TaskBatch.cat(
        [family.sample(b, shots=shots, query=10, generator=g, split=split) for b in sizes]
    )


def rule_curves(graph, init, update, family, *, split, n_tasks, shots, steps, seed, support=False):
    """Query (or support) MSE after 0..steps of ``update`` from ``init``: ``(steps + 1, n)``."""
    tasks = same_tasks(family, split=split, n_tasks=n_tasks, shots=shots, seed=seed)
    x, y = (tasks.support_x, tasks.support_y) if support else (tasks.query_x, tasks.query_y)
    fast = broadcast_tasks({k: v.detach() for k, v in init.items()}, n_tasks)
    curve = [query_losses(graph, fast, {}, x, y, loss="mse", metric=True)]
    with torch.no_grad():
        unroll(graph, update, fast, {}, tasks.support_x, tasks.support_y, steps=steps, horizon=10,
               loss="mse", on_step=lambda s, f: curve.append(
                   query_losses(graph, f, {}, x, y, loss="mse", metric=True)))  # fmt: skip
    return torch.stack(curve).double()


def tuned(kind, graph, init, family, *, at, seed, shots=10):
    """Step size of ``kind`` best after ``at`` steps on 100 meta-validation tasks."""
    scores = {}
    for lr in LR_GRID[kind]:
        c = rule_curves(graph, init, RULES[kind](lr), family, split="val", n_tasks=100,
                        shots=shots, steps=at, seed=seed)  # fmt: skip
        v = float(c[at].mean())
        scores[lr] = v if math.isfinite(v) else math.inf
    return min(scores, key=scores.get)


def oracle(family, *, split, n_tasks, shots, seed):
    """Exact least squares of ``a sin x + b cos x`` on the support set; query MSE ``(n,)``."""
    g = torch.Generator().manual_seed(derive_seed(seed, split, "report", shots, 10))
    t = family.sample(n_tasks, shots=shots, query=10, generator=g, split=split).to(
        "cpu", torch.float64
    )
    basis = lambda x: torch.cat([torch.sin(x), torch.cos(x)], -1)  # noqa: E731
    coef = torch.linalg.lstsq(basis(t.support_x), t.support_y).solution
    return ((basis(t.query_x) @ coef - t.query_y) ** 2).mean((1, 2))


def summary(v: torch.Tensor) -> tuple[float, float, int]:
    """Mean and 95% half-width over the tasks that stayed finite, and how many did not."""
    v = v.double()
    ok = torch.isfinite(v) & (v < 1e6)
    f = v[ok]
    if len(f) < 2:
        return float("nan"), float("nan"), int((~ok).sum())
    return float(f.mean()), float(ci95_over_tasks(f[None], dim=1)[0]), int((~ok).sum())


def cell(m: float, c: float, bad: int) -> str:
    return f"{m:>9.4f} ± {c:<6.4f}" + (f"[{bad}div]" if bad else "      ")


def first_reaching(curve_mean: torch.Tensor, target: float) -> int | None:
    hit = (curve_mean <= target).nonzero()
    return int(hit[0]) if len(hit) else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=180.0, help="meta-training seconds per learner")
    p.add_argument("--max-steps", type=int, default=70000)
    p.add_argument("--tasks", type=int, default=400, help="meta-test tasks per setting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    ind = SinusoidFamily()
    ood = SinusoidFamily(amplitude=(5.0, 10.0), phase=(math.pi, 2 * math.pi))
    fams = {"ID": ind, "OOD": ood}
    n, seed, out = args.tasks, args.seed, {"settings": vars(args) | {"json": str(args.json)}}
    learners, stats = {}, {}
    for name in LEARNERS:
        init = learners["maml"].graph.state_dict() if name == "learned_opt" else None
        learners[name], stats[name] = meta_train(name, args.budget, args.max_steps, seed, init)
        print(f"# {name}: {stats[name]['iterations']} meta-iterations in "
              f"{stats[name]['train_s']:.0f} s", flush=True)  # fmt: skip
    # (method, learner or None, steps) rows; curves[method][(fam, K)] = per-task final metric
    methods = {"maml@10": ("maml", 10), "metasgd@1": ("metasgd", 1), "metasgd@10": ("metasgd", 10),
               "incontext": ("incontext", 0), "cnp": ("cnp", 0), "learned_opt@10": ("learned_opt", 10),
               "learned_opt@100": ("learned_opt", 100)}  # fmt: skip
    rows, times = {}, {}
    for label, (name, steps) in methods.items():
        for fname, fam in fams.items():
            for k in (5, 10):
                c, dt = timed_curves(learners[name], fam, split="test", n_tasks=n, shots=k,
                                     query=10, steps=steps, seed=seed)  # fmt: skip
                rows.setdefault(label, {})[(fname, k)] = c[-1]
                times.setdefault(label, dt)
    maml = learners["maml"]
    init = dict(maml.graph.named_parameters())
    lrs = {}
    for kind in ("adam", "sgd"):
        for at in (10, 100):
            lr = lrs[(kind, at)] = tuned(kind, maml.graph, init, ind, at=at, seed=seed)
            label = f"{kind}@{at} (lr {lr:g})"
            for fname, fam in fams.items():
                for k in (5, 10):
                    t0 = time.perf_counter()
                    c = rule_curves(maml.graph, init, RULES[kind](lr), fam, split="test",
                                    n_tasks=n, shots=k, steps=at, seed=seed)  # fmt: skip
                    times.setdefault(label, (time.perf_counter() - t0) / n)
                    rows.setdefault(label, {})[(fname, k)] = c[-1]
    for fname, fam in fams.items():
        for k in (5, 10):
            rows.setdefault("oracle (least squares)", {})[(fname, k)] = oracle(
                fam, split="test", n_tasks=n, shots=k, seed=seed)  # fmt: skip
    cols = [(f, k) for f in fams for k in (5, 10)]
    print(f"\nsinusoid query MSE, {n} meta-test tasks per column (mean ± 95% interval), "
          f"{args.budget:.0f} s meta-training per learner, seed {seed}, 1 thread; [n div]: n tasks "
          "diverged (NaN/Inf or > 1e6), left out of the mean")  # fmt: skip
    head = f"{'method':<26}" + "".join(f"{f'{f} K={k}':>24}" for f, k in cols) + f"{'ms/task':>9}"
    print(head + "\n" + "-" * len(head))
    table = {}
    for label, r in rows.items():
        cells = {f"{f} K={k}": summary(r[(f, k)]) for f, k in cols}
        table[label] = {"cells": cells, "ms_per_task": 1e3 * times.get(label, float("nan"))}
        print(f"{label:<26}" + "".join(cell(*v) for v in cells.values())
              + f"{1e3 * times.get(label, float('nan')):>9.2f}")  # fmt: skip
    out.update(train=stats, table=table, tuned_lr={f"{k}@{a}": v for (k, a), v in lrs.items()})
    out["learned_opt"] = learned_opt_targets(learners, ind, lrs, n=n, seed=seed)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2, default=str))


def learned_opt_targets(learners, ind, lrs, *, n, seed) -> dict:
    """Steps to reach tuned Adam's 100-step loss; 10x horizon; a wider tanh network."""
    lo, maml, msgd = learners["learned_opt"], learners["maml"], learners["metasgd"]
    res: dict = {}
    adam = rule_curves(maml.graph, dict(maml.graph.named_parameters()), adam_update(lrs[("adam", 100)]),
                       ind, split="test", n_tasks=n, shots=10, steps=100, seed=seed)  # fmt: skip
    long = 10 * (lo.horizon + lo.warmup)  # 10x the steps the rule was trained on
    learned = metric_curves(
        lo, ind, split="test", n_tasks=n, shots=10, query=10, steps=long, seed=seed
    )
    meta_sgd = metric_curves(msgd, ind, split="test", n_tasks=n, shots=10, query=10, steps=100,
                             seed=seed)  # fmt: skip
    target = float(adam[100].mean())
    s = first_reaching(learned.mean(1), target)
    res["query"] = {"adam_100": target, "learned_steps_to_reach": s,
                    "learned_at": {k: float(learned[k].mean()) for k in (0, 10, 20, 50, 100, long)},
                    "metasgd_at": {k: float(meta_sgd[k].mean()) for k in (1, 2, 5, 10, 100)},
                    "learned_finite": bool(torch.isfinite(learned).all())}  # fmt: skip
    print(
        f"\nlearned optimizer (trained on steps 1..{lo.horizon + lo.warmup}: warm-up <= {lo.warmup} "
        f"+ {lo.horizon} unrolled), K=10 query MSE on {n} tasks:"
    )
    print(f"  tuned Adam from the MAML init, 100 steps: {target:.4f}; learned rule reaches it at "
          f"step {s}; learned at steps " + "/".join(map(str, res["query"]["learned_at"])) + ": "
          + " / ".join(f"{v:.4f}" for v in res["query"]["learned_at"].values()))  # fmt: skip
    print("  Meta-SGD at steps 1/2/5/10/100: "
          + " / ".join(f"{v:.4g}" for v in res["query"]["metasgd_at"].values()))  # fmt: skip
    # The rule alone on fresh networks (random init, not meta-learned): support loss vs tuned Adam.
    for label, hidden, act in (("trained architecture", [40, 40], "relu"),
                               ("2x wider, tanh", [80, 80], "tanh")):  # fmt: skip
        torch.manual_seed(seed + 1)
        graph = mlp_graph(hidden=hidden, activation=act)
        init = dict(graph.named_parameters())
        best, best_v = None, math.inf
        for lr in LR_GRID["adam"]:
            v = float(rule_curves(graph, init, adam_update(lr), ind, split="val", n_tasks=100,
                                  shots=10, steps=100, seed=seed, support=True)[100].mean())  # fmt: skip
            if v < best_v:
                best, best_v = lr, v
        a = rule_curves(graph, init, adam_update(best), ind, split="test", n_tasks=n, shots=10,
                        steps=100, seed=seed, support=True)  # fmt: skip
        lr_ = rule_curves(graph, init, lo.rule, ind, split="test", n_tasks=n, shots=10, steps=100,
                          seed=seed, support=True)  # fmt: skip
        t = float(a[100].mean())
        s = first_reaching(lr_.mean(1), t)
        speed = None if s is None else 100 / max(s, 1)
        res[label] = {"adam_lr": best, "adam_100_support": t, "learned_steps_to_reach": s,
                      "speedup": speed, "learned_100_support": float(lr_[100].mean())}  # fmt: skip
        print(f"  random init, {label}: support MSE tuned Adam (lr {best:g}) @100 {t:.4f}; learned "
              f"@100 {float(lr_[100].mean()):.4f}, reaches Adam@100 at step {s} "
              f"(speed-up {'-' if speed is None else f'{speed:.2f}x'})")  # fmt: skip
    return res


if __name__ == "__main__":
    main()
