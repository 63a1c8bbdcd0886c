"""Which true primitive each candidate of a data-routed sum learner holds, across the parameter.

    python scripts/bank_coverage.py runs/<run>/checkpoints/last.ckpt --png coverage.png

For a checkpoint of ``algo.name: annealed_sum`` (the sum structure) on the compositional family:
every candidate of the kept replica, at every context of its evaluation grid, is fitted by least
squares to each true primitive at ``--params`` values of its parameter, over the family's input
range; the table prints each candidate's lowest residual (a fraction of the curve's variance) and
the context giving it, ``*`` on the candidate matched to the primitive (one to one, Hungarian).
Then a line for every primitive whose matched candidate does not reproduce it within
``--threshold`` somewhere in its range, naming the candidate that does instead, and the bank's
label-free overlap (:mod:`metacompose.router.bank_overlap`: candidates that share curves,
which is how one candidate comes to hold two primitives). ``--png``: the table as heat maps.
docs/router.md, "A candidate that holds two primitives", reads two checkpoints this way.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from metacompose.algorithms.annealed_sum import AnnealedSumLearner
from metacompose.cli.args import checkpoint, positive_float, positive_int
from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import run_script
from metacompose.evaluate import load_checkpoint
from metacompose.router.bank_coverage import gaps, match, primitive_coverage
from metacompose.router.bank_overlap import POINTS, THRESHOLD, bank_overlap
from metacompose.training.checkpoint_io import checkpoint_file


def parse() -> argparse.Namespace:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=checkpoint)
    p.add_argument("--params", type=positive_int, default=11, help="parameter values (default 11)")
    p.add_argument("--threshold", type=positive_float, default=THRESHOLD, help="below: reproduced")
    p.add_argument("--png", type=Path, default=None, help="also draw the table here")
    args = p.parse_args()
    if args.threshold >= 1.0:
        p.error(f"--threshold {args.threshold:g}: must be below 1 (a fraction of the variance)")
    if args.png is not None and not args.png.parent.is_dir():
        p.error(f"--png {args.png}: folder {args.png.parent} does not exist")
    args.src, args.refuse = checkpoint_file(args.checkpoint), p.error
    return args


def slots(learner: AnnealedSumLearner, family) -> dict[str, tuple]:
    """``{name: (bank, [(primitive name, Primitive)])}`` for the kept replica."""
    r, (reg_f, reg_g) = learner.kept, family.structure.registries
    inner = [(n, reg_f[n]) for n in family.inner]
    outer = [(n, reg_g[n]) for n in family.outer]
    if learner.shared:
        return {"the bank": (learner.f_banks[r], inner + outer)}
    return {"f-bank": (learner.f_banks[r], inner), "g-bank": (learner.g_banks[r], outer)}


def table(name: str, covs, matched: dict[str, int]) -> list[str]:
    count = len(covs[0].residual)
    lines = [f"{name}: lowest residual @ its context, per candidate (* matched)",
             f"{'':>16}" + "".join(f"{'candidate ' + str(c):>17}" for c in range(count))]  # fmt: skip
    for cov in covs:
        for i, p in enumerate(cov.params):
            label = cov.name if p is None else f"{cov.name} p={p:.2f}"
            cells = [("*" if matched.get(cov.name) == c else " ")
                     + f"{cov.residual[c][i]:.4f} @{cov.context[c][i]:+.2f}" for c in range(count)]  # fmt: skip
            lines.append(f"{label:>16}" + "".join(f"{cell:>17}" for cell in cells))
    return lines


def draw(panels: dict[str, tuple], path: Path, threshold: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 0.22 * max(
        sum(len(c.params) for c in covs) for covs, _ in panels.values()) + 2), squeeze=False)  # fmt: skip
    for ax, (name, (covs, matched)) in zip(axes[0], panels.items(), strict=True):
        rows = [(c, i) for c in covs for i in range(len(c.params))]
        m = np.array([[math.log10(max(c.residual[k][i], 1e-6)) for k in range(len(c.residual))]
                      for c, i in rows])  # fmt: skip
        im = ax.imshow(np.clip(m, -6, 0), cmap="viridis_r", vmin=-6, vmax=0, aspect="auto")
        owner = {k: n for n, k in matched.items()}
        ax.set_xticks(range(m.shape[1]), [f"{k}\n{owner.get(k, '-')}" for k in range(m.shape[1])])
        ax.set_yticks(range(len(rows)), [c.name if c.params[i] is None else
                                         f"{c.name} {c.params[i]:.2f}" for c, i in rows], fontsize=6)  # fmt: skip
        for y, (c, i) in enumerate(rows):
            k = matched.get(c.name)
            if k is not None:
                mark = "o" if c.residual[k][i] < threshold else "x"
                ax.plot(k, y, mark, color="red", markersize=4, fillstyle="none")
        ax.set_title(f"{name}: log10 residual (o/x: matched, reached or not)", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse()
    torch.set_num_threads(1)
    learner, _, family = load_checkpoint(args.src)
    if not isinstance(learner, AnnealedSumLearner) or learner.structure != "sum":
        args.refuse(f"{args.src}: coverage reads the sum structure of annealed_sum only")
    if not all(hasattr(family, a) for a in ("inner", "outer", "x_range", "structure")):
        args.refuse(f"{args.src}: the task family exposes no primitives ({family.name})")
    x = torch.linspace(*family.x_range, POINTS, dtype=torch.float64)
    panels = {}
    for name, (bank, prims) in slots(learner, family).items():
        covs = [primitive_coverage(bank, prim, n, x=x, grid=learner.eval_grid, params=args.params,
                                   offset=learner.offset) for n, prim in prims]  # fmt: skip
        matched = match(covs)
        print("\n".join(table(name, covs, matched)))
        for line in gaps(covs, matched, threshold=args.threshold) or [f"{name}: every primitive "
                                                                      "reached by its candidate"]:  # fmt: skip
            print("  " + line)
        overlap = bank_overlap(bank, x=x, grid=learner.eval_grid, offset=learner.offset,
                               threshold=args.threshold)  # fmt: skip
        print("  " + overlap.describe(name))
        panels[name] = (covs, matched)
    if args.png is not None:
        draw(panels, args.png, args.threshold)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    run_script(main)
