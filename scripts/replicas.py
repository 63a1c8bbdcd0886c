"""Every replica of an annealed checkpoint (``algo.name: annealed_sum``), side by side: what picks
the kept one and how each routes held-out pairs.

    python scripts/replicas.py runs/<run>/checkpoints/last.ckpt [more.ckpt ...] --tasks 200

Per replica: its running training fit (the selection criterion; ``*`` = kept), its amplitude
limit, the query MSE on seen pairs of the *validation* split routed from the support set (a
label-free alternative criterion), its usage balance there (the entropy of how tasks spread over
each bank's candidates, another: a replica that merges two primitives into one candidate and splits
a third over two uses its candidates unevenly), and on held-out pairs of the test split its query MSE, joint
NMI and the fraction of tasks with both primitives matched (scored as a set). The last two read
the family's true pairs: they judge the selection, they cannot make it. The closing line compares
the kept replica with the one a label-reading oracle would pick.

``--fit-tasks N`` adds each replica's best-pair fit on the same ``N`` seen-pair *training* tasks (the
training objective's hard minimum, refined as configured; the running fit averages over each
replica's own meta-batches instead): a criterion to compare replicas, and runs, on equal terms;
and, per primitive, each replica's mean fit over those of the tasks whose true pair holds it
(where the training error lives: a primitive the candidates cannot represent, a saw read through
too coarse a table say, shows up in every pair it is part of).

``--seconds`` adds the kept replica's evaluation milliseconds per held-out task (one thread,
median of 7 interleaved rounds): routed from data as configured, from data on the grid alone, and
by the descriptor (each task's true pair: every context pair of the grid, refined as configured
and on the grid alone; when the banks have as many candidates as the family has primitives): the
cost of routing.

``--pool 8+0 16+0 8+8``: the checkpoints are runs of one config and seed (the same meta-batches),
differing in their replicas (``algo.args.replicas``, ``balance_steps``, ``balanced_replicas``),
names and what only shows or checks a run (``POOL_FREE``; any other difference is named). Their
distinct replicas form a pool of plain and of balanced ones, and for each design ``P+B`` (``P``
plain and ``B`` balanced replicas) the script prints the expected score of the replica a run of
that design keeps (the lowest running fit), its replicas drawn without replacement from the pool:
exact, by counting, not sampled. One run's kept replica is one draw; the pool says how much of a
design's result was the luck of its starts.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from omegaconf import OmegaConf

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.build import build_family
from metacompose.cli.args import checkpoint, non_negative_int, positive_int, seed
from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import run_script
from metacompose.evaluate import family_purity, load_checkpoint
from metacompose.tasks.base import derive_seed


def draw(family, n: int, *, split: str, subset: str, seed: int, shots: int, query: int):
    g = torch.Generator().manual_seed(derive_seed(seed, "replicas", split, subset))
    return family.sample(n, shots=shots, query=query, generator=g, split=split, subset=subset)


def balance(choices: dict[str, torch.Tensor], sizes: dict[str, int]) -> float:
    """How evenly tasks spread over each bank's candidates: the entropy of the usage counts over
    log(candidates), averaged over the slots (1: every candidate used equally; label-free)."""
    out = []
    for slot, picked in choices.items():
        if sizes[slot] < 2 or len(picked) == 0:  # one candidate, or no task: nothing to spread
            continue
        p = torch.bincount(picked, minlength=sizes[slot]).double() / len(picked)
        p = p[p > 0]
        out.append(float(-(p * p.log()).sum()) / math.log(sizes[slot]))
    return sum(out) / len(out) if out else 1.0


NEAR_FIT = 1.5  # fixed on 4 checkpoints, then worse than the lowest fit on 3 of 4 fresh ones (docs/router.md)


def most_balanced(used: list[float], fit: list[float], *, within: float | None = None) -> int:
    """The replica with the highest usage balance (to 3 decimals; ties: the lower fit), among
    those whose running training fit is at most ``within`` times the lowest (``None``: all).
    Label-free: fits and routing choices only."""
    lowest = min(f for f in fit if math.isfinite(f)) if any(map(math.isfinite, fit)) else math.inf
    pool = [r for r in range(len(fit)) if within is None or fit[r] <= within * lowest]
    return max(pool or range(len(fit)), key=lambda r: (round(used[r], 3), -fit[r]))


def kept_expectation(fit: list[float], score: list[float], balanced: list[bool], *,
                     plain: int, bal: int) -> float:  # fmt: skip
    """The expected ``score`` of the kept replica (lowest ``fit``; ties: the lower index) when a
    run's ``plain`` plain and ``bal`` balanced replicas are drawn without replacement from the
    pool: each replica's score times the chance that it is drawn and no other drawn one fits
    better (choose the rest of its kind, and all of the other kind, among those that fit worse)."""
    kinds = {False: plain, True: bal}
    size = {k: sum(b == k for b in balanced) for k in kinds}
    if any(kinds[k] > size[k] for k in kinds):
        raise ValueError(f"a design of {plain}+{bal} needs more replicas than the pool's "
                         f"{size[False]}+{size[True]}")  # fmt: skip
    order = sorted(range(len(fit)), key=lambda i: (fit[i], i))
    total, worse = 0.0, dict(size)
    for i in order:
        k = balanced[i]
        worse[k] -= 1  # now: replicas of this kind that fit worse than i
        if kinds[k] == 0:
            continue
        chance = math.comb(worse[k], kinds[k] - 1) / math.comb(size[k], kinds[k])
        chance *= math.comb(worse[not k], kinds[not k]) / math.comb(size[not k], kinds[not k])
        total += chance * score[i]
    return total


def score(learner, family, r: int, val, held, truth) -> tuple[float, ...]:
    """Replica ``r``'s held-out joint NMI and both-matched fraction, its query MSE on ``val``
    and ``held``, and its usage balance on ``val`` (it routes while its running fit is the
    lowest; the caller restores ``fit``)."""
    learner.fit.fill_(float("inf"))
    learner.fit[r] = 0.0
    sizes = {"f": learner.f_banks[r].count, "g": learner.g_banks[r].count}
    choices = {k: v.tolist() for k, v in learner.choices(held).items()}
    purity = family_purity(learner, family, choices, truth)
    mse = (float(learner.evaluate(b).mean()) for b in (val, held))
    used = balance(learner.choices(val), sizes)
    both = purity.get("as_set", {}).get(
        "joint_accuracy", purity["all_matched"]
    )  # the chain: per slot
    return (purity["joint_nmi"], both, *mse, used)


def task_fits(learner, family, n: int, *, seed: int, shots: int, query: int):
    """The same ``n`` seen-pair training tasks, and each replica's best-pair fit on each of them
    ``(n, replicas)``, as ``meta_step`` measures it (one task at a time); the learner's buffers
    and mode are restored."""
    g = torch.Generator().manual_seed(derive_seed(seed, "replicas", "fixed-fit"))
    tasks = family.sample(n, shots=shots, query=query, generator=g, split="train")
    saved = learner.fit.clone(), learner.amplitude.clone()
    fits = torch.zeros(n, len(saved[0]), dtype=torch.float64)
    learner.train()
    try:
        with torch.no_grad():
            for i in range(n):
                learner.fit.fill_(math.nan)
                learner.meta_step(tasks.slice(i, i + 1))
                fits[i] = learner.fit.double()
    finally:
        learner.fit.copy_(saved[0])
        learner.amplitude.copy_(saved[1])
        learner.eval()
    return tasks, fits


def by_primitive(family, tasks, fits) -> dict[str, torch.Tensor]:
    """Each primitive's mean of ``fits`` ``(n, replicas)`` over the tasks whose true pair holds
    it (``factor:name``, e.g. ``f:saw``): where a replica's training error lives."""
    out = {}
    for factor, names in family.factors.items():
        ids = tasks.info[factor]
        for k, name in enumerate(names):
            if bool((ids == k).any()):
                out[f"{factor}:{name}"] = fits[ids == k].mean(0)
    return out


def eval_ms(learner, cfg, held, *, seed: int, rounds: int = 7) -> dict[str, float]:
    """Milliseconds per task to evaluate ``held`` with the kept replica: routed from data (as
    configured, and on the grid alone) and by the descriptor (refined as configured, and on the
    grid alone; the same tasks drawn with their one-hot (f, g) descriptor); median of ``rounds`` interleaved rounds. Timing only:
    a replica trained from data does not hold its candidates in the descriptor's order."""
    modes = {"from data": ("data", learner.refine, held),
             "from data, grid only": ("data", 0, held)}  # fmt: skip
    onehot = build_family(OmegaConf.merge(cfg.task, {"args": {"descriptor": "onehot"}}))
    described = draw(onehot, len(held.support_x), split="test", subset="held_out", seed=seed,
                     shots=cfg.task.shots, query=cfg.task.query)  # fmt: skip
    if described.descriptor.shape[-1] == sum(learner.graph.num_candidates.values()):
        if learner.refine:
            modes["by the descriptor"] = ("descriptor", learner.refine, described)
        modes["by the descriptor, grid only"] = ("descriptor", 0, described)
    saved = learner.eval_routing, learner.refine
    secs: dict[str, list[float]] = {m: [] for m in modes}
    try:
        for _ in range(rounds):
            for mode, (routing, refine, batch) in modes.items():
                learner.eval_routing, learner.refine = routing, refine
                start = time.perf_counter()
                learner.evaluate(batch)
                secs[mode].append((time.perf_counter() - start) / len(batch.support_x))
    finally:
        learner.eval_routing, learner.refine = saved
    return {m: sorted(v)[len(v) // 2] * 1e3 for m, v in secs.items()}


def main() -> None:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=checkpoint)
    p.add_argument("--tasks", type=positive_int, default=200, help="tasks per split")
    p.add_argument("--seed", type=seed, default=0, help="seed of the drawn tasks")
    p.add_argument(
        "--refine",
        type=non_negative_int,
        default=None,
        help="route with this many rounds of sub-grid context search (default: the checkpoint's "
        "algo.args.refine; 0: the grid alone)",
    )
    p.add_argument(
        "--fit-tasks",
        type=positive_int,
        default=None,
        help="also each replica's best-pair fit on this many fixed training tasks",
    )
    p.add_argument("--seconds", action="store_true", help="also time the kept replica's evaluation")
    p.add_argument(
        "--pool",
        nargs="+",
        type=design,
        metavar="P+B",
        help="pool the checkpoints' distinct replicas (runs of one config and seed) and print the "
        "expected kept replica of runs of P plain and B balanced replicas",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    loaded = [(path, *load_checkpoint(path)) for path in args.checkpoints]
    for path, learner, cfg, _ in loaded:  # every refusal before any scoring
        if not isinstance(learner, AnnealedSumLearner):
            p.error(f"{path}: algo.name is {cfg.algo.name}, not annealed_sum (no replicas)")
        if learner.eval_routing != "data":
            p.error(
                f"{path}: algo.args.eval_routing={learner.eval_routing}: only a checkpoint routed "
                "from data has a routing to score"
            )
        if args.refine and learner.structure != "sum":
            p.error(f"{path}: --refine {args.refine}: the sum structure only")
        differ = pool_differences(loaded[0][2], cfg) if args.pool else []
        if differ:
            p.error(f"{path}: --pool needs runs of one config and seed (the same meta-batches); "
                    f"this one differs from the first in {', '.join(differ)}")  # fmt: skip
    pool: set[tuple[float, bool, float, float]] = set()  # distinct (fit, balanced, both, MSE)
    for path, learner, cfg, family in loaded:
        learner.eval()
        if args.refine is not None:
            learner.refine = args.refine
        kept, fit = learner.kept, learner.fit.clone()
        kw = {"seed": args.seed, "shots": cfg.task.shots, "query": cfg.task.query}
        val = draw(family, args.tasks, split="val", subset="seen", **kw)
        held = draw(family, args.tasks, split="test", subset="held_out", **kw)
        truth = {f: held.info[f].tolist() for f in family.factors}
        print(
            f"{path}\n  replica  train fit  amp limit  val MSE  balance  held-out MSE  NMI    both"
        )
        both = []
        try:
            rows = [score(learner, family, r, val, held, truth) for r in range(len(fit))]
        finally:
            learner.fit.copy_(fit)
        for r, (nmi, b, val_mse, held_mse, used) in enumerate(rows):
            on = bool(learner.balance_steps) and r >= learner.balance_from
            pool.add((float(fit[r]), on, b, held_mse))
            both.append(b)
            print(
                f"  {r:>5d}{'*' if r == kept else ' '}  {fit[r]:9.4f}  {learner.amplitude[r]:9.2f}"
                f"  {val_mse:7.4f}  {used:7.3f}  {held_mse:12.4f}  {nmi:.3f}  {b:.3f}"
            )
        best = max(range(len(both)), key=both.__getitem__)
        used = [row[4] for row in rows]
        even = most_balanced(used, fit.tolist())
        near = most_balanced(used, fit.tolist(), within=NEAR_FIT)
        print(
            f"  kept {kept} (both {both[kept]:.3f}); most balanced {even} (both {both[even]:.3f});"
            f" fit within {NEAR_FIT}x, then most balanced {near} (both {both[near]:.3f});"
            f" best held-out {best} (both {both[best]:.3f})"
        )
        if args.fit_tasks:
            tasks, fits = task_fits(learner, family, args.fit_tasks, **kw)
            print(f"  fit on {args.fit_tasks} fixed training tasks: "
                  + ", ".join(f"{r} {v:.4f}" for r, v in enumerate(fits.mean(0).tolist())))  # fmt: skip
            for name, per in by_primitive(family, tasks, fits).items():
                print(f"    tasks with {name:<14}" + "".join(f" {v:8.4f}" for v in per.tolist()))
        if args.seconds:
            ms = eval_ms(learner, cfg, held, seed=args.seed)
            print(f"  evaluation ms per held-out task (refine {learner.refine}, one thread): "
                  + "; ".join(f"{m} {v:.2f}" for m, v in ms.items()))  # fmt: skip
    if args.pool:
        print_pool(pool, args.pool)


def design(text: str) -> tuple[int, int]:
    """``P+B``: P plain and B balanced replicas, at least one."""
    parts = text.split("+")
    if len(parts) != 2 or not all(q.isdigit() for q in parts) or not int(parts[0]) + int(parts[1]):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not P+B (plain + balanced replicas, e.g. 8+8)"
        )
    return int(parts[0]), int(parts[1])


# What pooled runs may differ in: their replicas, where they were written, and what only shows or
# checks the run. The rest (threads, logging and checkpoint cadence included) must match: the pool
# merges a replica shared by two runs only when its scores are bit-identical.
POOL_FREE = (
    "name", "out_dir", "algo.args.replicas", "algo.args.balance_steps",
    "algo.args.balanced_replicas", "trainer.enable_progress_bar", "trainer.logger", "report",
    "verify",
)  # fmt: skip


def pool_differences(first, cfg) -> list[str]:
    """The keys (``key (value vs first's value)``) in which ``cfg`` differs from ``first``,
    beyond ``POOL_FREE``; values compare as JSON (``1`` and ``1.0`` differ, NaN equals NaN)."""

    def flat(node, prefix=""):
        if isinstance(node, dict) and node:
            out = {}
            for k, v in node.items():
                out.update(flat(v, f"{prefix}{k}."))
            return out
        return {prefix[:-1]: json.dumps(node, sort_keys=True)}

    a, b = (flat(OmegaConf.to_container(c, resolve=True)) for c in (first, cfg))
    free = tuple(k + "." for k in POOL_FREE)
    return [
        f"{k} ({b.get(k, 'unset')} vs {a.get(k, 'unset')})"
        for k in sorted(a.keys() | b.keys())
        if k not in POOL_FREE and not k.startswith(free) and a.get(k) != b.get(k)
    ]


def print_pool(pool: set[tuple[float, bool, float, float]], designs: list[tuple[int, int]]) -> None:
    fit, on, both, mse = (list(c) for c in zip(*sorted(pool)))
    n_b = sum(on)
    print(f"pool: {len(on) - n_b} plain and {n_b} balanced distinct replicas; the kept replica's "
          "expected held-out both matched / query MSE (drawn without replacement, exact)")  # fmt: skip
    for plain, bal in designs:
        if plain > len(on) - n_b or bal > n_b:
            print(f"  {plain:>3d} plain + {bal:>3d} balanced: the pool is too small")
            continue
        e = [kept_expectation(fit, v, on, plain=plain, bal=bal) for v in (both, mse)]
        print(f"  {plain:>3d} plain + {bal:>3d} balanced: {e[0]:.3f} / {e[1]:.4f}")


if __name__ == "__main__":
    run_script(main)
