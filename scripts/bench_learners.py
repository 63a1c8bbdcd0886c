"""Meta-learner families on the sinusoid, same seeds, budget and meta-test tasks.

MAML, Meta-SGD, the in-context transformer, the CNP and the learned optimizer are each meta-trained
for the same wall-clock budget (plain loop: ``learner.meta_step`` + Adam, the math of
``metacompose train``) from their shipped configs; Adam and SGD inner loops (no meta-learned
update, step size tuned on meta-validation tasks) start from the MAML init; the oracle fits
``a sin x + b cos x`` (= A sin(x - phase), linear in (a, b)) to the support set by exact least
squares. Every method meets the same seeded meta-test tasks (in distribution, and out of
distribution: amplitude [5, 10], phase [pi, 2 pi]). The learned optimizer meta-trains its update rule
from the MAML init (learn_init=false), so it, Adam and SGD differ only in the update. Then its
targets: steps to reach tuned Adam's 100-step loss (and the advantage, 100 / steps), 10x its
training horizon, and the same steps-to-reach on a 2x wider tanh network it never saw, from that
network's own MAML init (``maml_tanh80``, meta-trained here with the same budget: the main
target's protocol) and from a random init (support loss: the rule as an optimizer from scratch),
next to the trained architecture from a random init, each with the hand-written iRprop- the rule's
far direction starts as (not learned: what meta-training adds or loses); one MET/MISSED line per
target.

    python scripts/bench_learners.py --budget 180 --tasks 400 --json learners.json
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from metacompose.algorithms.inner_loop import broadcast_tasks, query_losses
from metacompose.algorithms.learned_inner_loop import adam_update, rprop_update, sgd_update, unroll
from metacompose.build import build_learner
from metacompose.cli.args import meta_steps, positive_float, positive_int, seed
from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import run_script
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
    # MAML on the transfer network (2x wider, tanh): the init the rule is run from in the transfer
    # row measured as the main target is (the rule itself never trains on this network)
    "maml_tanh80": ("sinusoid.yaml", ["model.args.hidden=[80,80]", "model.args.activation=tanh"]),
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
        if cfg.optim.grad_clip is not None:  # as metacompose train: clip the meta-gradient norm
            torch.nn.utils.clip_grad_norm_(learner.parameters(), cfg.optim.grad_clip)
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


def rule_curves(graph, init, update, family, *, split, n_tasks, shots, steps, seed, support=False,
                guard=False, horizon=10, slack=1.0):  # fmt: skip
    """Query (or support) MSE after 0..steps of ``update`` from ``init``: ``(steps + 1, n)``
    (``guard``, ``slack``: the learned optimizer's evaluation guard)."""
    tasks = same_tasks(family, split=split, n_tasks=n_tasks, shots=shots, seed=seed)
    x, y = (tasks.support_x, tasks.support_y) if support else (tasks.query_x, tasks.query_y)
    fast = broadcast_tasks({k: v.detach() for k, v in init.items()}, n_tasks)
    curve = [query_losses(graph, fast, {}, x, y, loss="mse", metric=True)]
    with torch.no_grad():
        unroll(graph, update, fast, {}, tasks.support_x, tasks.support_y, steps=steps,
               horizon=horizon, loss="mse", guard=guard, slack=slack, on_step=lambda s, f: curve.append(
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
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--budget", type=positive_float, default=180.0, help="meta-training seconds per learner"
    )
    p.add_argument("--max-steps", type=meta_steps, default=70000)
    p.add_argument("--tasks", type=positive_int, default=400, help="meta-test tasks per setting")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument(
        "--sections",
        nargs="+",
        default=["sinusoid", "few_shot"],
        choices=["sinusoid", "few_shot"],
        help="sinusoid: the table and the learned "
        "optimizer's targets; few_shot: digits 5-way 1-shot and mathachieve",
    )
    p.add_argument(
        "--few-shot-budget", type=positive_float, default=60.0, help="seconds per method"
    )
    p.add_argument(
        "--few-shot-tasks", type=positive_int, default=200, help="meta-test tasks per section"
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    out = {"settings": vars(args) | {"json": str(args.json)}}
    if "sinusoid" in args.sections:
        out.update(sinusoid(args))
    if "few_shot" in args.sections:
        out["few_shot"] = {
            label: few_shot_section(label, spec, budget=args.few_shot_budget,
                                    tasks=args.few_shot_tasks, seed=args.seed)
            for label, spec in SECTIONS.items()
        }  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2, default=str))


def sinusoid(args) -> dict:
    """The sinusoid table (every learner, ID and OOD, K=5 and 10) and the learned optimizer's
    targets."""
    ind = SinusoidFamily()
    ood = SinusoidFamily(amplitude=(5.0, 10.0), phase=(math.pi, 2 * math.pi))
    fams = {"ID": ind, "OOD": ood}
    n, seed, out = args.tasks, args.seed, {}
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
          "diverged (NaN/Inf or > 1e6), left out of the mean; Meta-SGD and the learned optimizer "
          "with the evaluation guard (their default)")  # fmt: skip
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
    return out


def steps_to_reach(curve: torch.Tensor, target: float) -> dict:
    """First step whose mean is at most ``target`` and the speed-up ``100 / step`` over an
    optimizer that needs 100 steps (``None``: never within the curve)."""
    s = first_reaching(curve, target)
    return {"steps": s, "speedup": None if s is None else 100 / max(s, 1)}


def reach_line(label: str, kind: str, target: float, curve: torch.Tensor, hit: dict) -> str:
    speed = "-" if hit["speedup"] is None else f"{hit['speedup']:.2f}x"
    return (f"  {label:<40} {kind} MSE tuned Adam@100 {target:.4f}; learned @{len(curve) - 1} "
            f"{float(curve[-1]):.4f}, reaches it at step {hit['steps']} (advantage {speed})")  # fmt: skip


def learned_opt_targets(learners, ind, lrs, *, n, seed) -> dict:
    """Issue #19's learned-optimizer targets, on the K=10 held-out tasks: steps to reach tuned
    Adam's 100-step query loss; the query loss at 1, H, 2H, 5H and 10H steps (H: the steps the rule
    was trained on) next to tuned Adam, tuned SGD and Meta-SGD (guarded and not); and the same
    "steps to reach tuned Adam@100" on a 2x wider tanh network the rule never saw: from that
    network's MAML init (query loss, the main target's protocol) and from a random init (support
    loss: the rule as an optimizer from scratch), with the trained architecture's random init."""
    lo, maml, msgd = learners["learned_opt"], learners["maml"], learners["metasgd"]
    h = lo.horizon + lo.warmup  # the rule was trained on steps 1..h
    marks = (1, h, 2 * h, 5 * h, 10 * h)
    init = dict(maml.graph.named_parameters())
    kw = {"split": "test", "n_tasks": n, "shots": 10, "seed": seed}
    guard = {"horizon": lo.horizon, "slack": lo.guard_slack}
    curves = {
        f"learned opt (guard{'' if lo.guard else ' off'})": metric_curves(
            lo, ind, query=10, steps=10 * h, **kw
        ).mean(1),
        f"learned opt, guard {'off' if lo.guard else 'on'}": rule_curves(
            lo.graph, dict(lo.graph.named_parameters()), lo.rule, ind, steps=10 * h,
            guard=not lo.guard, **guard, **kw,
        ).mean(1),
        # what the rule minimises: the support loss of the same adaptation (not a target)
        "learned opt, SUPPORT MSE": rule_curves(
            lo.graph, dict(lo.graph.named_parameters()), lo.rule, ind, steps=10 * h,
            guard=lo.guard, support=True, **guard, **kw,
        ).mean(1),
        **{f"{k} tuned@100 (lr {lrs[(k, 100)]:g})": rule_curves(
            maml.graph, init, RULES[k](lrs[(k, 100)]), ind, steps=10 * h, **kw).mean(1)
           for k in ("adam", "sgd")},
    }  # fmt: skip
    for on in (True, False):
        msgd.eval_guard = on
        curves[f"Meta-SGD (guard {'on' if on else 'off'})"] = metric_curves(
            msgd, ind, query=10, steps=10 * h, **kw
        ).mean(1)
    msgd.eval_guard = True
    adam_label = next(k for k in curves if k.startswith("adam"))
    target = float(curves[adam_label][100])
    learned = curves[next(iter(curves))]
    main = steps_to_reach(learned, target)
    finite = bool(torch.isfinite(learned).all())
    improving = bool(learned[10 * h] <= learned[h])
    support = curves["learned opt, SUPPORT MSE"]
    res = {"H": h, "adam_100": target, "held_out": main,
           "curves": {k: {m: float(c[m]) for m in marks} for k, c in curves.items()},
           "learned_finite": finite, "learned_improving_10H": improving,
           "support_improving_10H": bool(support[10 * h] <= support[h])}  # fmt: skip
    print(f"\nlearned optimizer trained on steps 1..{h} (warm-up <= {lo.warmup} + {lo.horizon} "
          f"unrolled), guard slack {lo.guard_slack:g}; K=10 query MSE (mean of {n} tasks; NaN: "
          "some task diverged) after steps:")  # fmt: skip
    head = f"  {'method':<34}" + "".join(f"{f'{m}':>11}" for m in marks)
    print(head + "\n  " + "-" * (len(head) - 2))
    for k, c in curves.items():
        print(f"  {k:<34}" + "".join(f"{float(c[m]):>11.4g}" for m in marks))
    print("\n  steps to reach tuned Adam@100's loss (advantage = 100 / steps), the rule trained on "
          "relu 40-40 only:")  # fmt: skip
    print(reach_line("held out, MAML init (relu 40-40)", "query", target, learned[:101], main))
    # The transfer network from its own MAML init: the main target's quantity and protocol.
    tm = learners["maml_tanh80"]
    t_init = dict(tm.graph.named_parameters())
    t_lr = tuned("adam", tm.graph, t_init, ind, at=100, seed=seed)
    t_adam = float(rule_curves(tm.graph, t_init, adam_update(t_lr), ind, steps=100, **kw)
                   [100].mean())  # fmt: skip
    t_curve = rule_curves(tm.graph, t_init, lo.rule, ind, steps=100, guard=lo.guard, **guard,
                          **kw).mean(1)  # fmt: skip
    res["tanh 80-80, MAML init"] = {"adam_lr": t_lr, "adam_100": t_adam,
                                    **steps_to_reach(t_curve, t_adam)}  # fmt: skip
    print(reach_line("2x wider tanh 80-80, its MAML init", "query", t_adam, t_curve,
                     res["tanh 80-80, MAML init"]))  # fmt: skip
    # The rule alone on fresh networks (random init, no meta-learned init): support loss.
    for label, hidden, act in (("relu 40-40, random init", [40, 40], "relu"),
                               ("2x wider tanh 80-80, random init", [80, 80], "tanh")):  # fmt: skip
        torch.manual_seed(seed + 1)
        graph = mlp_graph(hidden=hidden, activation=act)
        r_init = dict(graph.named_parameters())
        best, best_v = None, math.inf
        for lr in LR_GRID["adam"]:
            v = float(rule_curves(graph, r_init, adam_update(lr), ind, split="val", n_tasks=100,
                                  shots=10, steps=100, seed=seed, support=True)[100].mean())  # fmt: skip
            if v < best_v:
                best, best_v = lr, v
        a = rule_curves(graph, r_init, adam_update(best), ind, support=True, steps=100, **kw)
        c = rule_curves(graph, r_init, lo.rule, ind, support=True, steps=100, guard=lo.guard,
                        **guard, **kw).mean(1)  # fmt: skip
        t = float(a[100].mean())
        # the hand-written optimizer the rule's far direction starts as (no meta-learning)
        r = rule_curves(graph, r_init, rprop_update(), ind, support=True, steps=100, **kw).mean(1)
        res[label] = {"adam_lr": best, "adam_100_support": t, **steps_to_reach(c, t),
                      "learned_100_support": float(c[100]), "rprop": steps_to_reach(r, t),
                      "rprop_100_support": float(r[100])}  # fmt: skip
        print(reach_line(label, "support", t, c, res[label]))
        print(f"    {'(hand-written iRprop-, not learned)':<38} @100 {float(r[100]):.4f}, "
              f"reaches it at step {res[label]['rprop']['steps']}")  # fmt: skip
    verdicts = {
        "held out: tuned Adam@100's loss in <= 50 steps": main["steps"] is not None
        and main["steps"] <= 50,
        f"finite and improving at 10H = {10 * h} ({float(learned[10 * h]):.4f} <= "
        f"{float(learned[h]):.4f} at H)": finite and improving,
        ">= 1.5x advantage on tanh 80-80 from its MAML init (<= 66 steps)": ok_15(
            res["tanh 80-80, MAML init"]),
        ">= 1.5x advantage on tanh 80-80 from a random init (<= 66 steps)": ok_15(
            res["2x wider tanh 80-80, random init"]),
    }  # fmt: skip
    print(
        f"\n  (not a target) support MSE, what the rule minimises: {float(support[h]):.4g} at H, "
        f"{float(support[10 * h]):.4g} at 10H, improving: {res['support_improving_10H']}"
    )
    for text, ok in verdicts.items():
        print(f"  target {'MET   ' if ok else 'MISSED'} {text}")
    res["verdicts"] = verdicts
    return res


def ok_15(hit: dict) -> bool:
    """At least 1.5x faster than tuned Adam's 100 steps."""
    return hit["speedup"] is not None and hit["speedup"] >= 1.5


# Few-shot sections: (label, base config + overrides per method). Digits is the stand-in for the
# glyph family where the Noto fonts (its render cache) are absent; mathachieve is a grouped real
# family (one school = one task; intervals at the group level).
SECTIONS = {
    "digits 5-way 1-shot (accuracy)": {
        "base": ("base/digits.yaml", ["data.meta_batch_size=8"]),
        "metasgd": ("base/digits.yaml", ["data.meta_batch_size=8", "algo.name=metasgd"]),
        "incontext": ("digits_5way1shot_incontext.yaml", []),
        "learned_opt": ("base/digits.yaml", [
            "algo.name=learned_opt", "data.meta_batch_size=4", "algo.eval_inner_steps=10",
            "algo.args={horizon: 5, truncation: 5, max_step: 0.1, init_lr: 0.01}"]),
        "methods": ("protonet", "maml", "metasgd", "incontext", "learned_opt"),
    },
    "mathachieve K=5 (query MSE)": {
        "base": ("mathachieve.yaml", []),
        "maml": ("mathachieve.yaml", []),
        "metasgd": ("mathachieve.yaml", ["algo.name=metasgd"]),
        "incontext": ("mathachieve_incontext.yaml", []),
        "cnp": ("mathachieve.yaml", [  # the encoder of mathachieve_incontext.yaml
            "algo.name=cnp", "algo.eval_inner_steps=0", "model.args.hidden=[64]",
            "model.args.out_features=64", "algo.args={likelihood: gaussian, nll_beta: 0.5, min_shots: 2}"]),
        "learned_opt": ("mathachieve.yaml", ["algo.name=learned_opt", "algo.args={warmup: 10}"]),
        "methods": ("scratch", "mixed_effects", "maml", "metasgd", "incontext", "cnp",
                    "learned_opt"),
    },
}  # fmt: skip


def few_shot_section(label: str, spec: dict, *, budget: float, tasks: int, seed: int) -> dict:
    """Every method of one section on the same seeded meta-val/meta-test tasks, ``budget`` seconds
    of meta-training each (:func:`metacompose.baselines.compare.run_method`'s protocol: steps and
    fine-tuning step sizes chosen on meta-val), printed with 95% intervals (over groups for a
    grouped family, over tasks otherwise)."""
    from metacompose.baselines.compare import EvalPlan, MethodResult, run_method, score
    from metacompose.baselines.meta_train import meta_train as train_for
    from metacompose.build import build_family
    from metacompose.report.grouped_stats import over_groups
    from metacompose.report.grouped_tasks import curve_task_groups, has_groups

    path, over = spec["base"]
    cfg = load_config(ROOT / "configs" / path, [f"seed={seed}", *over])
    family = build_family(cfg.task)
    plan = EvalPlan(shots=cfg.task.shots, query=cfg.task.query, val_tasks=max(tasks // 4, 50),
                    test_tasks=tasks, seed=seed)  # fmt: skip
    groups = (curve_task_groups(family, split="test", n_tasks=tasks, shots=plan.shots,
                                query=plan.query, seed=seed) if has_groups(family) else None)  # fmt: skip
    results = {}
    for method in spec["methods"]:
        t0 = time.perf_counter()
        if method in ("incontext", "cnp", "learned_opt"):
            path, over = spec[method]
            c = load_config(ROOT / "configs" / path, [f"seed={seed}", *over])
            learner = build_learner(c, family)
            r = train_for(learner, family, iterations=10**6, meta_batch_size=c.data.meta_batch_size,
                          shots=plan.shots, query=plan.query, lr=c.optim.lr, seed=seed,
                          max_seconds=budget, desc=f"meta-train {method}")  # fmt: skip
            t1 = time.perf_counter()
            v, steps, _ = score(learner.eval(), family, plan, max_steps=c.algo.eval_inner_steps)
            res = MethodResult(method, family.metric, None, steps, None, r.iterations, r.seconds,
                               time.perf_counter() - t1, v)  # fmt: skip
        else:
            path, over = spec.get(method, spec["base"])
            c = load_config(ROOT / "configs" / path, [f"seed={seed}", *over])
            res = run_method(method, c, family, plan, iterations=10**6, max_seconds=budget,
                             finetune_steps=20)  # fmt: skip
        results[method] = res
        print(f"# {label}: {method} {res.train_iterations} meta-iterations, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    unit = "groups" if groups is not None else "tasks"
    print(f"\n{label}: {tasks} meta-test tasks (seed {seed}), {budget:.0f} s meta-training per "
          f"method, steps chosen on {plan.val_tasks} meta-val tasks; 95% interval over {unit}")  # fmt: skip
    print(f"  {'method':<14}{'mean ± 95%':>22}{'steps':>7}{'iters':>8}")
    out = {}
    for m, r in results.items():
        est = over_groups(r.values, groups) if groups is not None else summary(r.values)
        mean, ci = (est.mean, est.ci95) if groups is not None else est[:2]
        out[m] = {"mean": mean, "ci95": ci, "steps": r.steps, "iterations": r.train_iterations}
        print(f"  {m:<14}{mean:>12.4f} ± {ci:<7.4f}{r.steps:>7}{r.train_iterations:>8}")
    return out


if __name__ == "__main__":
    run_script(main)
