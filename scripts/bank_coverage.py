"""Which true primitive each candidate of a data-routed sum learner holds, across the parameter.

    python scripts/bank_coverage.py runs/<run>/checkpoints/last.ckpt --png coverage.png

For a checkpoint of ``algo.name: annealed_sum`` (the sum structure, routed) on the compositional
family: every candidate of the kept replica (both banks as one set, ``f[k]`` and ``g[k]``: either
bank may hold either slot's primitives), at every context of its evaluation grid, is fitted by
least squares to each true primitive (inner and outer) at ``--params`` values of its parameter in
the family's range, over the family's input range; the table prints each candidate's lowest
residual (a fraction of the curve's variance) and the context giving it, ``*`` on the candidate
matched to the primitive (one to one, Hungarian).
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
from metacompose.router.bank_coverage import candidate_labels, gaps, match, primitive_coverage
from metacompose.router.bank_overlap import POINTS, THRESHOLD, bank_overlap
from metacompose.tasks.compositional import CompositionalFamily
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
    if args.png is not None and args.png.suffix != ".png":
        p.error(f"--png {args.png}: must end in .png")
    if args.png is not None and not args.png.parent.is_dir():
        p.error(f"--png {args.png}: folder {args.png.parent} does not exist")
    args.src, args.refuse = checkpoint_file(args.checkpoint), p.error
    return args


def candidates(learner: AnnealedSumLearner, family) -> tuple[dict, list[tuple]]:
    """The kept replica's banks (``{"f", "g"}``, or ``{"bank"}`` when shared) and every true
    primitive of the family, inner then outer, as ``(name, Primitive)``."""
    r, (reg_f, reg_g) = learner.kept, family.structure.registries
    prims = [(n, reg_f[n]) for n in family.inner] + [(n, reg_g[n]) for n in family.outer]
    if learner.shared:
        return {"bank": learner.f_banks[r]}, prims
    return {"f": learner.f_banks[r], "g": learner.g_banks[r]}, prims


def table(covs, matched: dict[str, int], labels: list[str]) -> list[str]:
    lines = ["lowest residual @ its context, per candidate (* matched)",
             f"{'':>16}" + "".join(f"{label:>15}" for label in labels)]  # fmt: skip
    for cov in covs:
        for i, p in enumerate(cov.params):
            name = cov.name if p is None else f"{cov.name} p={p:.2f}"
            cells = [("*" if matched.get(cov.name) == c else " ")
                     + f"{cov.residual[c][i]:.4f}@{cov.context[c][i]:+.2f}"
                     for c in range(len(labels))]  # fmt: skip
            lines.append(f"{name:>16}" + "".join(f"{cell:>15}" for cell in cells))
    return lines


def draw(covs, matched: dict[str, int], labels: list[str], path: Path, threshold: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [(c, i) for c in covs for i in range(len(c.params))]
    fig, ax = plt.subplots(figsize=(1.0 * len(labels) + 3, 0.16 * len(rows) + 2))
    m = np.array([[math.log10(max(c.residual[k][i], 1e-6)) for k in range(len(labels))]
                  for c, i in rows])  # fmt: skip
    im = ax.imshow(np.clip(m, -6, 0), cmap="viridis_r", vmin=-6, vmax=0, aspect="auto")
    owner = {k: n for n, k in matched.items()}
    ax.set_xticks(range(len(labels)), [f"{lab}\n{owner.get(k, '-')}" for k, lab in
                                       enumerate(labels)], fontsize=7)  # fmt: skip
    ax.set_yticks(range(len(rows)), [c.name if c.params[i] is None else f"{c.name} {c.params[i]:.2f}"
                                     for c, i in rows], fontsize=6)  # fmt: skip
    for y, (c, i) in enumerate(rows):
        k = matched.get(c.name)
        if k is not None:
            ax.plot(k, y, "o" if c.residual[k][i] < threshold else "x", color="red",
                    markersize=4, fillstyle="none")  # fmt: skip
    ax.set_title(f"log10 residual / variance (o, x: matched, within {threshold:g} or not)",
                 fontsize=8)  # fmt: skip
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
    if learner.routing == "uniform":
        args.refuse(f"{args.src}: uniform routing reads no single candidate")
    if not isinstance(family, CompositionalFamily):
        args.refuse(f"{args.src}: the task family exposes no primitives ({family.name})")
    if set(family.inner) & set(family.outer):
        args.refuse(f"{args.src}: a primitive named in both inner and outer")
    banks, prims = candidates(learner, family)
    labels = candidate_labels(banks)
    x = torch.linspace(*family.x_range, POINTS, dtype=torch.float64)
    grid, offset = learner.eval_grid, learner.offset
    covs = [primitive_coverage(banks, prim, n, x=x, grid=grid, params=args.params, offset=offset,
                               param_range=family.param_range)
            for n, prim in prims]  # fmt: skip
    matched = match(covs)
    print("\n".join(table(covs, matched, labels)))
    for line in gaps(covs, matched, labels, threshold=args.threshold) or [
        "every primitive reached by its candidate"
    ]:
        print("  " + line)
    overlap = bank_overlap(banks, x=x, grid=grid, offset=offset, threshold=args.threshold)
    print("  " + overlap.describe("overlap"))
    if args.png is not None:
        draw(covs, matched, labels, args.png, args.threshold)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    run_script(main)
