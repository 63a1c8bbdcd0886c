"""Render inspection reports: Graphviz DOT text, a matplotlib drawing, and a usage heat map.

No system Graphviz is needed: PNGs are drawn with matplotlib (Agg backend) from a layered layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from metacompose.router.metrics import matched_order


def _space(s: dict) -> str:
    return f"{s['kind']}{s['shape']}"


def node_label(node: dict[str, Any]) -> str:
    """Multi-line label: module, type, interface, size, and the routing/modulation/adaptation stats."""
    lines = [node["module"], node["type"]]
    lines.append(f"{_space(node['in_space'])} -> {_space(node['out_space'])}")
    lines.append(f"{node['num_parameters']} params")
    stats = []
    if "routing_prob" in node:
        stats.append(f"p={node['routing_prob']:.2f}")
    if "modulation_norm" in node:
        stats.append(f"|mod|={node['modulation_norm']:.2f}")
    stats.append(f"|dw|={node['weight_change_norm']:.3f}")
    lines.append(" ".join(stats))
    return "\n".join(lines)


def title(report: dict[str, Any]) -> str:
    task = report.get("task")
    if not task:
        return f"module graph (plain; |dw| averaged over {report.get('tasks_averaged', 0)} tasks)"
    parts = [f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in task.items()]
    return "task: " + ", ".join(parts)


def to_dot(report: dict[str, Any]) -> str:
    """Graphviz DOT of one report (input -> nodes -> output, edges labelled with their space)."""
    lines = ["digraph composed {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
    lines.append(f'  label="{title(report)}"; labelloc=t;')
    lines.append("  input [shape=ellipse]; output [shape=ellipse];")
    for n in report["nodes"]:
        label = node_label(n).replace("\n", "\\n")
        lines.append(f'  {n["name"]} [label="{label}"];')
    srcs, dsts = {e["src"] for e in report["edges"]}, {e["dst"] for e in report["edges"]}
    names = [n["name"] for n in report["nodes"]]
    for n in report["nodes"]:
        if n["name"] not in dsts:
            lines.append(f'  input -> {n["name"]} [label="{_space(n["in_space"])}"];')
    for e in report["edges"]:
        lines.append(f'  {e["src"]} -> {e["dst"]} [label="{_space(e["space"])}"];')
    for name in names:
        if name not in srcs:
            out = next(n for n in report["nodes"] if n["name"] == name)["out_space"]
            lines.append(f'  {name} -> output [label="{_space(out)}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _layout(report: dict[str, Any]) -> dict[str, tuple[float, float]]:
    g = nx.DiGraph()
    g.add_nodes_from(["input", "output", *(n["name"] for n in report["nodes"])])
    dsts = {e["dst"] for e in report["edges"]}
    srcs = {e["src"] for e in report["edges"]}
    for n in report["nodes"]:
        if n["name"] not in dsts:
            g.add_edge("input", n["name"])
        if n["name"] not in srcs:
            g.add_edge(n["name"], "output")
    g.add_edges_from((e["src"], e["dst"]) for e in report["edges"])
    pos = {}
    for x, layer in enumerate(nx.topological_generations(g)):
        layer = sorted(layer)
        for i, name in enumerate(layer):
            pos[name] = (3.6 * x, (len(layer) - 1) / 2 * 2.2 - 2.2 * i)
    return pos


def draw_graph(report: dict[str, Any], path: str | Path) -> None:
    """Draw one report to a PNG: boxes for modules, arrows labelled with the edge spaces."""
    pos = _layout(report)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    fig = Figure(figsize=(3.0 + 2.3 * (max(xs) - min(xs)) / 3.6, 3.2 + (max(ys) - min(ys))))
    ax = fig.subplots()
    nodes = {n["name"]: n for n in report["nodes"]}
    arrows = [("input", n) for n in nodes if n not in {e["dst"] for e in report["edges"]}]
    arrows += [(e["src"], e["dst"], _space(e["space"])) for e in report["edges"]]
    arrows += [
        (n, "output", _space(nodes[n]["out_space"]))
        for n in nodes
        if n not in {e["src"] for e in report["edges"]}
    ]
    for a in arrows:
        (x0, y0), (x1, y1) = pos[a[0]], pos[a[1]]
        ax.annotate(
            "",
            xy=(x1 - 1.35 if a[1] != "output" else x1 - 0.55, y1),
            xytext=(x0 + 1.35 if a[0] != "input" else x0 + 0.55, y0),
            arrowprops={"arrowstyle": "-|>", "color": "0.3", "lw": 1.4},
        )
        if len(a) == 3:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.12, a[2], ha="center", fontsize=8, color="0.3")
    for name, (x, y) in pos.items():
        if name in ("input", "output"):
            ax.text(
                x,
                y,
                name,
                ha="center",
                va="center",
                fontsize=10,
                bbox={"boxstyle": "round,pad=0.4", "fc": "0.93", "ec": "0.5"},
            )
            continue
        n = nodes[name]
        routed = "routing_prob" in n
        color = colormaps["Greens"](0.25 + 0.5 * n["routing_prob"]) if routed else "#dde8f5"
        ax.add_patch(
            FancyBboxPatch(
                (x - 1.3, y - 0.85),
                2.6,
                1.7,
                boxstyle="round,pad=0.05",
                fc=color,
                ec="0.25",
                lw=1.2,
            )
        )
        ax.text(x, y, node_label(n), ha="center", va="center", fontsize=8.5, linespacing=1.35)
    ax.set_xlim(min(xs) - 1.0, max(xs) + 1.0)
    ax.set_ylim(min(ys) - 1.2, max(ys) + 1.2)
    ax.set_axis_off()
    ax.set_title(title(report), fontsize=9, wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def draw_usage_heatmap(
    counts: dict[tuple[str, str], np.ndarray],
    row_names: dict[str, tuple[str, ...]],
    path: str | Path,
    *,
    picks: int = 1,
) -> dict[tuple[str, str], tuple[list[int], list[int], float]]:
    """Heat map per (slot, factor): rows = true primitive values, columns = candidates, both
    ordered by the Hungarian matching of candidates to values (matched pairs on the diagonal;
    :func:`metacompose.router.metrics.matched_order`), the matched accuracy in each title.

    Args:
        counts: ``(slot, factor)`` -> ``(len(values), C)`` task counts; slot ``"bank"``: one
            bank that every slot chooses from (the counts of all slots together).
        row_names: factor -> names of its values.
        picks: how often each true value is counted per task (once per candidate the task
            chose: the number of slots for a shared bank, whose counts pair every chosen
            candidate with every true value); the accuracy is the matched fraction of the
            tasks' values (matched counts over ``total / picks``).

    Returns:
        ``(slot, factor)`` -> ``(rows, columns, accuracy)`` as drawn.
    """
    slots = list(dict.fromkeys(s for s, _ in counts))
    factors = list(dict.fromkeys(f for _, f in counts))
    wide = max(m.shape[1] for m in counts.values())  # columns: room for each candidate's name
    fig = Figure(figsize=(max(3.4, 0.7 * wide) * len(factors), 2.8 * len(slots)))
    axes = fig.subplots(len(slots), len(factors), squeeze=False)
    drawn = {}
    for i, s in enumerate(slots):
        for j, f in enumerate(factors):
            rows, cols, acc = matched_order(counts[(s, f)])
            acc = min(1.0, acc * picks)  # the matched counts over the tasks' values
            drawn[(s, f)] = (rows, cols, acc)
            ax, m = axes[i][j], counts[(s, f)][np.ix_(rows, cols)]
            frac = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
            ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, aspect="auto")
            for (r, c), v in np.ndenumerate(m):
                ax.text(
                    c,
                    r,
                    int(v),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if frac[r, c] > 0.6 else "black",
                )
            ax.set_xticks(range(m.shape[1]), [f"{s}[{c}]" for c in cols], fontsize=8)
            ax.set_yticks(range(m.shape[0]), [row_names[f][r] for r in rows], fontsize=8)
            ax.set_xlabel(
                "candidate chosen in either slot"
                if s == "bank"
                else f"candidate chosen in slot '{s}'",
                fontsize=8,
            )
            ax.set_ylabel(f"true {f}", fontsize=8)
            ax.set_title(f"{s} vs {f}: matched accuracy {acc:.2f}", fontsize=8)
    fig.suptitle(
        "routing: task counts per true primitive\n(colour: row fraction; "
        "matched pairs on the diagonal)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return drawn
