"""Block restarts of an annealed checkpoint (``algo.name: annealed_sum``, the sum structure): each
bank of the kept replica in turn is learnt again from fresh starts while the other bank stays frozen,
and a label-free rule keeps the incumbent or one of the restarts. A pilot (docs/router.md, "Block
restarts after annealing"); writes a new checkpoint that every command reads.

    python scripts/restart_banks.py runs/<run>/checkpoints/last.ckpt --out restarted.ckpt
    metacompose eval restarted.ckpt --subset held_out --tasks 200

Why: a run that fails to route usually has one bank right and the other merged (one candidate
serving two primitives, a third primitive split over two candidates). With the right bank frozen,
annealing the other from fresh starts finds its primitives far more often than annealing both
together, and the restarts that do agree with each other.

Per phase (``--order fg``: f first, then g): ``--restarts`` fresh banks of the phase's slot, each
paired with a frozen copy of the incumbent's other bank, anneal as in training (``tau`` from the
run's ``tau_start`` to ``tau_end`` over ``--anneal`` of ``--steps`` meta-iterations, the run's
learning rate, meta-batch size, shots and query points, Adam). Then, among the incumbent and the
restarts, those whose best-pair fit on ``--fit-tasks`` fixed training tasks is within ``--within``
times the lowest are eligible, and the one whose routing of ``--agree-tasks`` fixed training tasks
agrees most with the others' (mean NMI of the (f, g) choices) is kept. Only training tasks are read.
The kept replica of the output holds the chosen banks and their amplitude limit; every other
replica, the config and the input file are unchanged.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import torch

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.cli.args import checkpoint, meta_steps, positive_float, positive_int, seed
from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import run_script
from metacompose.evaluate import load_checkpoint
from metacompose.modules.warp_line import WarpLineBank
from metacompose.progress import progress, say
from metacompose.router.metrics import normalized_mutual_info
from metacompose.tasks.base import TaskBatch, derive_seed
from metacompose.training.checkpoint_io import atomic_save, checkpoint_file, safe_load

CHUNK = 64  # tasks per meta_step when measuring fits and choices


def pick(fits: list[float], agree: list[float], *, within: float) -> int:
    """The index with the highest ``agree`` among those whose fit is at most ``within`` times the
    lowest finite fit (ties: the lower index); every index when no fit is finite."""
    finite = [f for f in fits if math.isfinite(f)]
    low = min(finite) if finite else math.inf
    pool = [i for i, f in enumerate(fits) if not finite or f <= within * low]
    return max(pool, key=lambda i: (agree[i], -i))


def agreement(labels: list[list]) -> list[float]:
    """Each labelling's mean NMI with every other one (1.0 for a single labelling)."""
    n = len(labels)
    if n == 1:
        return [1.0]
    nmi = [[normalized_mutual_info(a, b) if i < j else 0.0 for j, b in enumerate(labels)]
           for i, a in enumerate(labels)]  # fmt: skip
    return [sum(nmi[min(i, j)][max(i, j)] for j in range(n) if j != i) / (n - 1) for i in range(n)]


def pool_learner(template: AnnealedSumLearner, f_banks, g_banks, *, anneal: int):
    """A learner over the given banks with ``template``'s settings, annealing over ``anneal``."""
    return AnnealedSumLearner(
        f_banks=f_banks, g_banks=g_banks, tau_start=template.tau_start, tau_end=template.tau_end,
        anneal_steps=anneal, eval_contexts=len(template.eval_grid), ridge=template.ridge,
        fit_decay=template.fit_decay, refine=template.refine,
    )  # fmt: skip


def restart_pool(template, f, g, *, slot: str, restarts: int, anneal: int):
    """Replica 0: the incumbent ``f``, ``g`` (frozen); then ``restarts`` replicas, each a fresh bank
    for ``slot`` (as the incumbent's was built) and a frozen copy of the other bank."""
    incumbent = [copy.deepcopy(f).requires_grad_(False), copy.deepcopy(g).requires_grad_(False)]
    keep = incumbent[1] if slot == "f" else incumbent[0]
    fresh_like = f if slot == "f" else g
    fresh = [WarpLineBank(**fresh_like.spec()) for _ in range(restarts)]
    frozen = [copy.deepcopy(keep) for _ in range(restarts)]
    fs, gs = (fresh, frozen) if slot == "f" else (frozen, fresh)
    return pool_learner(template, [incumbent[0], *fs], [incumbent[1], *gs], anneal=anneal)


def anneal_pool(pool, family, *, steps: int, lr: float, batch: int, shots: int, query: int,
                generator: torch.Generator, desc: str) -> None:  # fmt: skip
    """Meta-train the pool's trainable banks for ``steps`` meta-iterations (Adam)."""
    opt = torch.optim.Adam([p for p in pool.parameters() if p.requires_grad], lr=lr)
    pool.train()
    for step in progress(range(steps), desc=desc, unit="step"):
        tasks = family.sample(batch, shots=shots, query=query, generator=generator, split="train")
        out = pool.meta_step(tasks, step=step)
        opt.zero_grad()
        out.objective.backward()
        opt.step()
    pool.eval()


def chunks(tasks: TaskBatch):
    n = len(tasks.support_x)
    return [tasks.slice(i, min(n, i + CHUNK)) for i in range(0, n, CHUNK)]


@torch.no_grad()
def fixed_fits(pool: AnnealedSumLearner, tasks: TaskBatch) -> list[float]:
    """Each replica's mean best-pair fit on ``tasks`` (support and query points, as meta-training
    measures it); the pool's buffers and mode are restored."""
    saved = pool.fit.clone(), pool.amplitude.clone()
    total = torch.zeros(len(saved[0]), dtype=torch.float64)
    pool.train()
    try:
        for part in chunks(tasks):
            pool.fit.fill_(math.nan)
            pool.meta_step(part)
            total += pool.fit.double() * len(part.support_x)
    finally:
        pool.fit.copy_(saved[0])
        pool.amplitude.copy_(saved[1])
        pool.eval()
    return (total / len(tasks.support_x)).tolist()


@torch.no_grad()
def choices(pool: AnnealedSumLearner, r: int, tasks: TaskBatch) -> list[tuple[int, int]]:
    """Replica ``r``'s (f, g) choice for each of ``tasks``, routed from the support set."""
    saved = pool.fit.clone()
    pool.fit.fill_(math.inf)
    pool.fit[r] = 0.0
    try:
        out = []
        for part in chunks(tasks):
            picked = pool.choices(part)
            out += list(zip(picked["f"].tolist(), picked["g"].tolist(), strict=True))
    finally:
        pool.fit.copy_(saved)
    return out


def write(src: Path, out: Path, *, kept: int, f, g, amplitude: float, record: dict) -> None:
    """``src`` with the kept replica's banks and amplitude limit replaced, to ``out``."""
    ckpt = safe_load(src)
    state = ckpt["state_dict"]
    for slot, bank in (("f", f), ("g", g)):
        for name, value in bank.state_dict().items():
            key = f"learner.{slot}_banks.{kept}.{name}"
            if key not in state:
                raise KeyError(f"{src}: no weight {key}")
            state[key] = value.detach().clone()
    state["learner.amplitude"] = state["learner.amplitude"].clone()
    state["learner.amplitude"][kept] = amplitude
    ckpt["metacompose_restart_banks"] = record
    atomic_save(ckpt, out)


def parse() -> argparse.Namespace:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=checkpoint)
    p.add_argument("--out", required=True, help="the new checkpoint (must not exist)")
    p.add_argument("--restarts", type=positive_int, default=4, help="fresh banks per phase")
    p.add_argument("--steps", type=meta_steps, default=2000, help="meta-iterations per phase")
    p.add_argument("--anneal", type=meta_steps, default=1500, help="of which tau falls over")
    p.add_argument("--order", default="fg", help="the phases' slots, e.g. fg, f, gf, fgfg")
    p.add_argument("--within", type=positive_float, default=1.5, help="fit eligibility factor")
    p.add_argument("--fit-tasks", type=positive_int, default=256, help="fixed tasks for fits")
    p.add_argument("--agree-tasks", type=positive_int, default=400, help="fixed tasks for NMI")
    p.add_argument("--seed", type=seed, default=0, help="seed of the fresh banks and tasks")
    args = p.parse_args()
    if args.anneal > args.steps:
        p.error(f"--anneal {args.anneal}: more than --steps {args.steps}")
    if not args.order or set(args.order) - {"f", "g"}:
        p.error(f"--order {args.order!r}: a string of f and g, e.g. fg")
    src = checkpoint_file(args.checkpoint)
    args.out = Path(args.out)
    if args.out.exists() or args.out.resolve() == src.resolve():
        p.error(f"--out {args.out}: exists; the input is never overwritten")
    if not args.out.parent.is_dir():
        p.error(f"--out {args.out}: folder {args.out.parent} does not exist")
    args.src = src
    args.refuse = p.error
    return args


def main() -> None:
    args = parse()
    torch.set_num_threads(1)
    learner, cfg, family = load_checkpoint(args.src)
    if not isinstance(learner, AnnealedSumLearner):
        args.refuse(f"{args.src}: algo.name is {cfg.algo.name}, not annealed_sum")
    if learner.structure != "sum" or learner.shared or learner.routing != "data":
        args.refuse(f"{args.src}: restarts need the sum structure with two banks, trained "
                    f"from data (structure {learner.structure}, shared {learner.shared}, "
                    f"routing {learner.routing})")  # fmt: skip
    kept = learner.kept
    f, g = learner.f_banks[kept], learner.g_banks[kept]
    amplitude = float(learner.amplitude[kept])
    shots, query = cfg.task.shots, cfg.task.query
    fixed = {}
    for name, n in (("fit", args.fit_tasks), ("agree", args.agree_tasks)):
        gen = torch.Generator().manual_seed(derive_seed(args.seed, "restart_banks", name))
        fixed[name] = family.sample(n, shots=shots, query=query, generator=gen, split="train")
    record = {"source": str(args.src), "kept": kept, "phases": []}
    start = time.perf_counter()
    for k, slot in enumerate(args.order):
        torch.manual_seed(derive_seed(args.seed, "restart_banks", "banks", k))
        pool = restart_pool(learner, f, g, slot=slot, restarts=args.restarts, anneal=args.anneal)
        gen = torch.Generator().manual_seed(derive_seed(args.seed, "restart_banks", "tasks", k))
        anneal_pool(pool, family, steps=args.steps, lr=cfg.optim.lr, batch=cfg.data.meta_batch_size,
                    shots=shots, query=query, generator=gen, desc=f"phase {k + 1} ({slot})")  # fmt: skip
        fits = fixed_fits(pool, fixed["fit"])
        agree = agreement([choices(pool, r, fixed["agree"]) for r in range(len(fits))])
        best = pick(fits, agree, within=args.within)
        for r, (fit, a) in enumerate(zip(fits, agree, strict=True)):
            name = "incumbent" if r == 0 else f"restart {r}"
            say(f"phase {k + 1} ({slot}): {name:<10} fit {fit:.5f}  agreement {a:.3f}"
                + ("  <- kept" if r == best else ""))  # fmt: skip
        f, g = pool.f_banks[best], pool.g_banks[best]
        if best:
            amplitude = float(pool.amplitude[best])
        record["phases"].append({"slot": slot, "fits": fits, "agreement": agree, "kept": best})
    write(args.src, args.out, kept=kept, f=f, g=g, amplitude=amplitude, record=record)
    changed = sum(ph["kept"] > 0 for ph in record["phases"])
    say(f"wrote {args.out}: replica {kept}, {changed} of {len(args.order)} phases took a restart "
        f"({time.perf_counter() - start:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    run_script(main)
