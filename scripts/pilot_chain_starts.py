"""Pilot (issue #15): where the chain's search fails, by the start of each bank's tables.

    python scripts/pilot_chain_starts.py --init random identity --seed 0          # ~4 min, 1 core
    python scripts/pilot_chain_starts.py --true g --freeze --init identity identity
    python scripts/pilot_chain_starts.py --routing data --replicas 4 --init random identity
    python scripts/pilot_chain_starts.py --routing data --replicas 4 --init random identity --true f --freeze

Meta-trains ``configs/from_data_chain_annealed.yaml`` (``y = a g(f(x)) + c``; ``--routing
descriptor``, the default, gives each training task its true pair, so only the tables, warps and
contexts are searched) as ``metacompose train`` does (Adam at the config's rate, its meta-batch,
shots, query points and steps), but with its own task stream, so that a bank can be started as
chosen: ``--init F G`` (``random`` or ``identity``, as ``algo.args.init`` takes them), ``--true f``
/ ``g`` / ``fg`` sets those banks' tables by hand to the config's own primitives (each table the
primitive's shape, its warp line chosen so that contexts -1..1 sweep the parameter 0..1; the
outer ``tanh_gain`` within the stretch limit), ``--freeze`` keeps them there, and ``--knots
6,12,96 --at 400,800`` trains coarse tables first, each refined to the next size at the given
step (the finer table reads as the coarser one did). Prints the running fit every 500 steps, then
the query MSE and routing purity on ``--tasks`` held-out and seen meta-test tasks (routed as the
config routes at evaluation: by the descriptor when trained so), and, routed from data, which true
primitives each candidate's seen tasks have (a candidate that holds two primitives shows on one
row). ``--contexts`` and ``--g-candidates`` change the training grid and the outer bank's size.
docs/router.md, "The chain's f-bank starts random" and "The outer bank given the true inner one",
has the measurements.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from metacompose.build import build_family, build_learner
from metacompose.cli.args import meta_steps, positive_int, seed
from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import run_script
from metacompose.config import load_config
from metacompose.evaluate import evaluate
from metacompose.modules.warp_line import INITS, WarpLineBank
from metacompose.tasks.base import derive_seed

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "from_data_chain_annealed.yaml"
PI = math.pi
# the config's primitives as tables and warp lines (shape, stretch s, shift t): read at contexts
# c = 2p - 1 they give each primitive at its parameter p (tanh_gain's gains 1-5 approximately)
TRUE = {
    "f": {
        "sine": (lambda u: torch.sin(2.5 * u + PI / 2), 0.2, PI / 5),
        "step": (lambda u: torch.tanh(3 * u), 0.0, -1.0),
        "bump": (lambda u: 2 * torch.exp(-(u**2)) - 1, 0.0, -1.0),
        "saw": (lambda u: 2 * torch.remainder((u + 1) / 2, 1.0) - 1, 0.0, 1.0),
    },
    "g": {
        "sin_freq": (lambda v: torch.sin(1.5 * PI * v), 1 / 3, 0.0),
        "abs_shift": (lambda v: v.abs(), 0.0, -0.5),
        "tanh_gain": (lambda v: torch.tanh(3 * v), 0.6, 0.0),
        "gauss": (lambda v: torch.exp(-4 * v**2), 0.0, -0.5),
    },
}


def set_true(bank: WarpLineBank, shapes: list[tuple]) -> None:
    """Candidate ``k`` of ``bank`` := ``shapes[k]`` (its table at the knots, its warp line)."""
    z = torch.linspace(-bank.span, bank.span, bank.table.shape[1])
    with torch.no_grad():
        for k, (fn, s, t) in enumerate(shapes):
            bank.table[k], bank.slope[k], bank.shift[k] = fn(z), s, t


def finer(bank: WarpLineBank, knots: int) -> WarpLineBank:
    """``bank`` with ``knots`` knots, each table read off the coarser one at the new knots."""
    new = WarpLineBank(**(bank.spec() | {"knots": knots}))
    z = torch.linspace(-bank.span, bank.span, knots)
    with torch.no_grad():  # context 0 reads each table as it is: u = x
        new.table.copy_(bank.read_at(z, torch.zeros(bank.count)))
        new.slope.copy_(bank.slope)
        new.shift.copy_(bank.shift)
    return new


def int_list(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"expected integers separated by commas, got {text!r}") from None
    if any(v < 2 for v in out):
        raise ValueError(f"every value must be >= 2, got {text!r}")
    return out


def main() -> None:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--routing", choices=["descriptor", "data"], default="descriptor")
    p.add_argument("--init", nargs=2, choices=INITS, default=["identity", "identity"],
                   metavar=("F", "G"), help="how each bank's tables start")  # fmt: skip
    p.add_argument("--true", choices=["f", "g", "fg"], default="", help="banks set by hand")
    p.add_argument("--freeze", action="store_true", help="the --true banks are not trained")
    p.add_argument("--replicas", type=positive_int, default=1)
    p.add_argument("--steps", type=meta_steps, default=3000, help="meta-iterations")
    p.add_argument("--knots", type=int_list, default=None, help="coarse-to-fine, e.g. 6,12,96")
    p.add_argument("--at", type=int_list, default=[], help="the steps to refine at")
    p.add_argument("--tasks", type=positive_int, default=400, help="meta-test tasks per subset")
    p.add_argument("--contexts", type=positive_int, default=None, help="the training grid")
    p.add_argument("--g-candidates", type=positive_int, default=4, help="the outer bank's size")
    a = p.parse_args()
    knots = a.knots or []
    if knots and len(a.at) != len(knots) - 1:
        p.error(f"--at: {len(knots) - 1} steps for --knots {a.knots}, got {len(a.at)}")
    if a.freeze and a.true in ("", "fg"):
        p.error(f"--freeze: freezes the banks of --true ({a.true or 'none'}); one must train")
    if knots and a.true:
        p.error("--knots with --true: refining a table set by hand would change it")
    if a.g_candidates != 4 and (a.routing == "descriptor" or "g" in a.true):
        p.error("--g-candidates: one candidate per outer primitive when routed by the "
                "descriptor or set by hand (4)")  # fmt: skip
    overrides = [f"seed={a.seed}", f"algo.args.routing={a.routing}",
                 f"algo.args.replicas={a.replicas}", f"algo.args.init=[{','.join(a.init)}]",
                 f"trainer.max_steps={a.steps}",
                 f"algo.args.anneal_steps={max(1, round(0.8 * a.steps))}",
                 f"algo.args.candidates=[4,{a.g_candidates}]"]  # fmt: skip
    if a.contexts is not None:
        overrides.append(f"algo.args.contexts={a.contexts}")
    if knots:
        overrides.append(f"algo.args.knots={knots[0]}")
    if a.routing == "descriptor":
        overrides.append("task.args.descriptor=onehot")
    cfg = load_config(CONFIG, overrides)
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    family = build_family(cfg.task)
    learner = build_learner(cfg, family)
    for slot in a.true:
        names = list(cfg.task.args.inner if slot == "f" else cfg.task.args.outer)
        for bank in learner.f_banks if slot == "f" else learner.g_banks:
            set_true(bank, [TRUE[slot][n] for n in names])
            bank.requires_grad_(not a.freeze)
    gen = torch.Generator().manual_seed(a.seed)
    shots, query, batch = cfg.task.shots, cfg.task.query, cfg.data.meta_batch_size

    def optimizer():
        trained = [q for q in learner.parameters() if q.requires_grad]
        return torch.optim.Adam(trained, lr=cfg.optim.lr)

    opt, start = optimizer(), time.perf_counter()
    learner.train()
    for step in range(a.steps):
        if step in a.at:
            size = knots[a.at.index(step) + 1]
            for banks in (learner.f_banks, learner.g_banks):
                for r, bank in enumerate(banks):
                    banks[r] = finer(bank, size)
            opt = optimizer()
        tasks = family.sample(batch, shots=shots, query=query, generator=gen, split="train")
        out = learner.meta_step(tasks, step=step)
        opt.zero_grad()
        out.objective.backward()
        opt.step()
        if step % 500 == 0 or step == a.steps - 1:
            fits = " ".join(f"{float(v):.4f}" for v in learner.fit)
            print(f"step {step:>5d}  running fit {fits}  ({time.perf_counter() - start:.0f} s)")
    learner.eval()
    for subset in ("held_out", "seen"):
        res = evaluate(learner, family, n_tasks=a.tasks, steps=0, shots=shots, query=query,
                       subset=subset)  # fmt: skip
        slots = res.routing["slots"] if res.routing else {}
        matched = " ".join(f"{s} {v['accuracy']:.3f}" for s, v in slots.items())
        nmi = f"joint NMI {res.routing['joint_nmi']:.3f}, matched {matched}" if slots else ""
        print(f"{subset:>8s}: query MSE {res.mean[-1]:.4f} ± {res.ci95[-1]:.4f}  {nmi}")
    if a.routing == "data":
        print_use(learner, family, n_tasks=a.tasks, shots=shots, query=query)


def print_use(learner, family, *, n_tasks: int, shots: int, query: int) -> None:
    """Per slot, each candidate's seen meta-test tasks by their true primitive."""
    g = torch.Generator().manual_seed(derive_seed(0, "test", "use"))
    batch = family.sample(n_tasks, shots=shots, query=query, generator=g, split="test",
                          subset="seen")  # fmt: skip
    with torch.no_grad():
        choices = learner.choices(batch)
    for slot, chosen in choices.items():
        names = family.factors[slot]
        print(f"{slot}-candidates' seen tasks by true primitive ({', '.join(names)}):")
        for k in range(learner.graph.num_candidates[slot]):
            truth = batch.info[slot][chosen == k]
            counts = torch.bincount(truth, minlength=len(names)).tolist()
            print(f"  {slot}[{k}]: {counts}")


if __name__ == "__main__":
    run_script(main)
