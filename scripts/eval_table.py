"""One table over seeds from ``metacompose eval --json`` files: per learner, its query metric
and (when the family exposes its true structure) the routing scores, one column per seed, then
the mean with a 95% Student-t interval over seeds.

    python scripts/eval_table.py \\
        --row "data-routed, held-out" s0_held.json s1_held.json s2_held.json \\
        --row "MAML of equal size, held-out" m0_held.json m1_held.json m2_held.json \\
        --row "descriptor-routed, held-out" d0_held.json - d2_held.json \\
        --ratio "data-routed, held-out" "MAML of equal size, held-out" \\
        --seeds 0 1 2

Each ``--row LABEL FILE...`` is one learner scored on one subset, one file per seed (``.json``,
or ``.json.gz`` compressed), in the order of ``--seeds``; ``-`` marks a seed not measured (a
``-`` cell; the mean is over the others). Per row: the query metric after the last inner step,
and, if the files carry routing purity: the fraction of tasks with every primitive matched (for
interchangeable slots, as a set; a file written before ``all_matched`` existed gives only the
mean matched accuracy over slots, its own row) and the joint NMI. ``--ratio A B``: A's metric over
B's, per seed where both were measured, and its mean over those seeds; where both files carry
their per-task values for the same task stream (``metacompose eval --json`` writes them: the same
family, subset, shots, query points, seed and count, and, in files that carry one, the same digest
of the tasks' values, ``tasks_digest``; a file written before the digest existed pairs only with
another such file), also the ratio with its 95% interval over
those tasks, paired (delta method; :func:`metacompose.report.stats.paired_ratio`). ``--tails K``
adds, for those paired ratios, the share of A's excess over B (summed over the tasks) that A's
``K`` worst tasks against B carry (:func:`metacompose.report.stats.worst_share`; ``-`` where A is
not worse on the mean): near 1, a few tasks make the whole gap.
"""

from __future__ import annotations

import argparse
import gzip
import json
import zlib
from pathlib import Path

from metacompose.cli.args import positive_int
from metacompose.cli.parser import OneLineParser
from metacompose.report.stats import over_seeds, paired_ratio, worst_share

MISSING = "-"


def read_eval(path: str | Path) -> dict:
    """The scores of one ``metacompose eval --json`` file: ``metric`` (after the last step) and,
    with routing, ``matched`` and ``nmi``. A bad file: ``SystemExit`` naming it."""
    try:
        raw = Path(path).read_bytes()
        d = json.loads(gzip.decompress(raw) if str(path).endswith(".gz") else raw)
        out = {"metric": float(d["mean"][-1]), "name": d["metric"]}
        if "last_per_task" in d:  # the tasks, for paired ratios
            keys = ("task_family", "subset", "shots", "query", "seed", "n_tasks", "tasks_digest")
            out["stream"] = tuple(d.get(k) for k in keys)
            out["tasks"] = [float(v) for v in d["last_per_task"]]
            if len(out["tasks"]) != d["n_tasks"]:
                raise ValueError(
                    f"last_per_task has {len(out['tasks'])} values, n_tasks {d['n_tasks']}"
                )
        r = d.get("routing")
        if r:
            slots = r["slots"].values()
            matched = r.get("as_set", {}).get("joint_accuracy", r.get("all_matched"))
            if matched is None:  # a file from before all_matched: only each slot's accuracy
                out["slot_matched"] = sum(s["accuracy"] for s in slots) / len(slots)
            else:
                out["matched"] = float(matched)
            out["nmi"] = float(r["joint_nmi"])
        return out
    except OSError as e:
        raise SystemExit(f"eval_table.py: {path}: {e.strerror or e}") from None
    except (EOFError, zlib.error) as e:  # a truncated or damaged .gz
        raise SystemExit(f"eval_table.py: {path}: not a whole gzip file ({e})") from None
    except (ValueError, KeyError, TypeError, IndexError, ZeroDivisionError, AttributeError) as e:
        why = f"no key {e}" if isinstance(e, KeyError) else str(e) or type(e).__name__
        raise SystemExit(
            f"eval_table.py: {path}: {why} (not written by metacompose eval --json)"
        ) from None


def cells(values: list[float | None], digits: int) -> list[str]:
    """Per-seed cells, then ``mean ± half-width`` over the measured seeds."""
    have = [v for v in values if v is not None]
    shown = [MISSING if v is None else f"{v:.{digits}f}" for v in values]
    if not have:
        return [*shown, MISSING]
    est = over_seeds(have)
    if est.n == 1:
        return [*shown, f"{est.mean:.{digits}f} (one seed)"]
    mean = est.text(digits)
    return [*shown, mean if len(have) == len(values) else f"{mean} ({len(have)} seeds)"]


def table(
    rows: list[tuple[str, list[dict | None]]],
    ratios: list[tuple[str, str]],
    seeds: list[str],
    *,
    tails: int | None = None,
) -> list[str]:
    """Markdown lines of the table (see the module docstring)."""
    lines = ["| | " + " | ".join(f"seed {s}" if s.isdigit() else s for s in seeds) + " | mean ± 95% t |",
             "|---" * (len(seeds) + 2) + "|"]  # fmt: skip
    names = {r["name"] for _, scores in rows for r in scores if r}
    metric = names.pop() if len(names) == 1 else "metric"
    metric = "MSE" if metric == "mse" else metric
    parts = [("query " + metric, "metric", 4), ("all primitives matched", "matched", 3),
             ("matched, mean over slots", "slot_matched", 3), ("joint NMI", "nmi", 3)]  # fmt: skip
    for label, scores in rows:
        for what, key, digits in parts:
            values = [None if r is None else r.get(key) for r in scores]
            if key != "metric" and all(v is None for v in values):
                continue
            lines.append(f"| {label}: {what} | " + " | ".join(cells(values, digits)) + " |")
    by_label = dict(rows)
    for a, b in ratios:
        values = [None if x is None or y is None else x["metric"] / y["metric"]
                  for x, y in zip(by_label[a], by_label[b], strict=True)]  # fmt: skip
        lines.append(f"| {a} / {b} | " + " | ".join(cells(values, 2)) + " |")
        paired = [paired_cell(x, y) for x, y in zip(by_label[a], by_label[b], strict=True)]
        if any(c != MISSING for c in paired):
            lines.append(f"| {a} / {b}, 95% paired over tasks | " + " | ".join(paired) + " | |")
            if tails:
                shares = [tail_cell(x, y, tails) for x, y in zip(by_label[a], by_label[b],
                                                                 strict=True)]  # fmt: skip
                lines.append(f"| {a} - {b}: share of the excess in the {tails} worst tasks | "
                             + " | ".join(shares) + " | |")  # fmt: skip
    return lines


def paired_cell(x: dict | None, y: dict | None) -> str:
    """``ratio ± half-width`` over the tasks both files scored (the same task stream), else ``-``."""
    if x is None or y is None or "tasks" not in x or "tasks" not in y or x["stream"] != y["stream"]:
        return MISSING
    return paired_ratio(x["tasks"], y["tasks"]).text(2)


def tail_cell(x: dict | None, y: dict | None, k: int) -> str:
    """:func:`worst_share` of the tasks both files scored, as a number, else ``-``."""
    if paired_cell(x, y) == MISSING:
        return MISSING
    share = worst_share(x["tasks"], y["tasks"], k)
    return MISSING if share is None else f"{share:.2f}"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--row",
        nargs="+",
        action="append",
        required=True,
        metavar="LABEL FILE",
        help="a learner's label, then one eval JSON per seed ('-': not measured)",
    )
    p.add_argument(
        "--ratio",
        nargs=2,
        action="append",
        default=[],
        metavar=("A", "B"),
        help="A's query metric over B's, per seed (labels of two --row)",
    )
    p.add_argument(
        "--seeds",
        nargs="+",
        default=None,
        help="column labels (a number N: 'seed N'; default 1, 2, ...), one per file of a row",
    )
    p.add_argument(
        "--tails",
        type=positive_int,
        default=None,
        metavar="K",
        help="for paired ratios, the share of the excess that the K worst tasks carry",
    )
    args = p.parse_args(argv)
    if args.tails is not None and not args.ratio:
        p.error("--tails: needs a --ratio to split")
    sizes = {len(r) - 1 for r in args.row}
    if min(sizes) < 1:
        p.error("--row needs a label and at least one file")
    if len(sizes) > 1:
        p.error(f"--row: every row needs as many files as the others (got {sorted(sizes)})")
    (n,) = sizes
    if args.seeds is not None and len(args.seeds) != n:
        p.error(f"--seeds: {len(args.seeds)} labels for {n} files per row")
    labels = [r[0] for r in args.row]
    if len(set(labels)) < len(labels):
        p.error("--row: two rows share a label")
    for a, b in args.ratio:
        for x in (a, b):
            if x not in labels:
                p.error(f"--ratio {x!r}: no --row has that label")
    args.seeds = args.seeds or [str(i + 1) for i in range(n)]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    rows = [(r[0], [None if f == MISSING else read_eval(f) for f in r[1:]]) for r in args.row]
    for line in table(rows, [tuple(r) for r in args.ratio], args.seeds, tails=args.tails):
        print(line)


if __name__ == "__main__":
    main()
