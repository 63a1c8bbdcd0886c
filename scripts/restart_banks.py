"""Block restarts of an annealed checkpoint (``algo.name: annealed_sum``, the sum or the chain): each
bank of the kept replica in turn is learnt again from fresh starts while the other bank stays frozen,
and a label-free rule keeps the incumbent or one of the restarts. A pilot (docs/router.md, "Block
restarts after annealing"); writes a new checkpoint that every command reads. A run config can
ask for the same phases as the last stage of ``metacompose train`` (``restart.order: fg``; the
same code, :mod:`metacompose.training.restart_stage`); this script is for a checkpoint already
trained.

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
agrees most with the others' (mean NMI of the (f, g) choices) is kept. A polish phase (``p``, e.g.
``--order fgp``) restarts nothing: both banks learn on together for ``--polish-steps`` at the run's
``tau_end`` (Adam at ``--polish-lr``), kept if they fit the fixed tasks better. A distil phase
(``d``, e.g. ``--order fgpd``) trains ``--restarts`` fresh pairs of banks as the descriptor-routed
learner trains, each training task's pair being the one the incumbent routes it to (on all its
points), with ``--steps`` and ``--anneal``; the distilled pair of lowest query MSE on
``--distil-tasks`` fixed training tasks of its own, routed and fitted on their support points,
is kept if it beats the incumbent's there beyond the 95% interval of their paired ratio
(docs/router.md, "The keep rule beyond doubt"). Only training tasks are read.
The kept replica of the output holds the chosen banks and their amplitude limit; every other
replica, the config and the input file are unchanged. On a checkpoint already restarted the phases
follow its recorded ones (numbered after them, with their ``--seed`` and fixed tasks): ``--order p``
on a run restarted with ``fg`` gives what ``restart.order: fgp`` would have.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from metacompose.cli.args import checkpoint, meta_steps, positive_float, positive_int, seed
from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import run_script
from metacompose.config import ConfigError
from metacompose.config.schema import RestartConfig
from metacompose.evaluate import load_with_restarts
from metacompose.progress import say
from metacompose.training.block_restarts import why_not_restartable
from metacompose.training.checkpoint_io import checkpoint_file
from metacompose.training.restart_stage import continued, restart_checkpoint


def parse() -> argparse.Namespace:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=checkpoint)
    p.add_argument("--out", required=True, help="the new checkpoint (must not exist)")
    p.add_argument("--restarts", type=positive_int, default=4, help="fresh banks per phase")
    p.add_argument("--steps", type=meta_steps, default=2000, help="meta-iterations per phase")
    p.add_argument("--anneal", type=meta_steps, default=1500, help="of which tau falls over")
    p.add_argument("--order", default="fg", help="phases, e.g. fg, gf, fgpd (p: polish, d: distil)")
    p.add_argument("--within", type=positive_float, default=1.5, help="fit eligibility factor")
    p.add_argument("--fit-tasks", type=positive_int, default=256, help="fixed tasks for fits")
    p.add_argument("--agree-tasks", type=positive_int, default=400, help="fixed tasks for NMI")
    p.add_argument("--distil-tasks", type=positive_int, default=2000, help="d's keep-rule tasks")
    p.add_argument("--seed", type=seed, default=0, help="seed of the fresh banks and tasks")
    p.add_argument("--polish-steps", type=meta_steps, default=600, help="steps of a polish phase")
    p.add_argument("--polish-lr", type=positive_float, default=0.003, help="its learning rate")
    args = p.parse_args()
    if args.anneal > args.steps:
        p.error(f"--anneal {args.anneal}: more than --steps {args.steps}")
    if args.distil_tasks < 2:
        p.error(f"--distil-tasks {args.distil_tasks}: needs 2 or more (the rule's interval)")
    if args.within < 1:
        p.error(f"--within {args.within:g}: must be >= 1 (the lowest fit is always eligible)")
    if not args.order or set(args.order) - {"f", "g", "p", "d"}:
        p.error(f"--order {args.order!r}: a string of f, g, p (polish) and d (distil), e.g. fgpd")
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
    learner, cfg, family, record = load_with_restarts(args.src)  # one read: weights and record
    why = why_not_restartable(learner)
    if why:
        args.refuse(f"{args.src}: block restarts cannot run: {why}")
    plan = RestartConfig(order=args.order, restarts=args.restarts, steps=args.steps,
                          anneal=args.anneal, within=args.within, fit_tasks=args.fit_tasks,
                          agree_tasks=args.agree_tasks, distil_tasks=args.distil_tasks,
                          seed=args.seed, polish_steps=args.polish_steps,
                          polish_lr=args.polish_lr)  # fmt: skip
    if record is not None:  # its phases come after the recorded ones
        try:
            continued(record, plan, names=lambda key: "--" + key.replace("_", "-"))
        except ConfigError as e:
            args.refuse(f"{args.src}: {e}")
    start = time.perf_counter()
    record = restart_checkpoint(
        args.src, args.out, learner=learner, family=family, plan=plan, lr=cfg.optim.lr,
        batch=cfg.data.meta_batch_size, shots=cfg.task.shots, query=cfg.task.query,
        in_place=False,
    )  # fmt: skip
    changed = sum(ph["kept"] > 0 for ph in record["phases"][-len(args.order) :])
    say(f"wrote {args.out}: replica {record['kept']}, {changed} of {len(args.order)} phases changed "
        f"its banks ({time.perf_counter() - start:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    run_script(main)
