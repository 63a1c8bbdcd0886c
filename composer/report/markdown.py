"""``report.md``: the report's numbers as Markdown tables."""

from __future__ import annotations

from composer.report.build import fmt


def render_markdown(report: dict, plots: dict[str, str]) -> str:
    s = report["settings"]
    lines = [
        "# metacompose evaluation report",
        "",
        f"{s['n_tasks']} seeded meta-test tasks per measurement (task seed {s['seed']}); "
        "`±` is the half-width of a 95% interval over tasks (normal approximation) or, in "
        "'Over seeds', over training seeds (Student t). MSE: lower is better.",
        "",
        "## Meta-test metric",
        "",
        "| checkpoint | family | algorithm | K | steps | metric | before adaptation | after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in report["checkpoints"]:
        a = e["adaptation"]
        before = {"mean": a["mean"][0], "ci95": a["ci95"][0]}
        lines.append(
            f"| {e['label']} | {e['family']} | {e['algorithm']} | {e['shots']} | "
            f"{e['inner_steps']} | {e['metric']} | {fmt(before)} | {fmt(e['final'])} |"
        )
    lines += [
        "",
        "## Over seeds",
        "",
        "| family | algorithm | seeds | final metric |",
        "|---|---|---|---|",
    ]
    for g in report["over_seeds"]:
        note = "" if len(g["seeds"]) > 1 else " (one seed: no interval)"
        lines.append(
            f"| {g['family']} | {g['algorithm']} | {g['seeds']} | {fmt(g['final'])}{note} |"
        )
    lines += ["", "## Sample efficiency (final metric vs K)", ""]
    for e in report["checkpoints"]:
        se = e["sample_efficiency"]
        cells = ", ".join(
            f"K={k}: {fmt({'mean': m, 'ci95': c})}"
            for k, m, c in zip(se["shots"], se["mean"], se["ci95"])
        )
        skipped = "; ".join(f"K={k} skipped: {r}" for k, r in se["skipped"].items())
        lines.append(f"- {e['label']}: {cells}" + (f" ({skipped})" if skipped else ""))
    lines += [
        "",
        "## Generalisation gap (meta-train tasks minus meta-test tasks)",
        "",
        "| checkpoint | meta-train tasks | meta-test tasks | gap |",
        "|---|---|---|---|",
    ]
    for e in report["checkpoints"]:
        g = e["generalisation"]
        lines.append(f"| {e['label']} | {fmt(g['train'])} | {fmt(g['test'])} | {fmt(g['gap'])} |")
    lines += ["", "## Out-of-distribution tasks", ""]
    for e in report["checkpoints"]:
        o = e["ood"]
        if o.get("family") is None:
            lines.append(f"- {e['label']}: not measured ({o['reason']})")
        else:
            lines.append(
                f"- {e['label']}: in distribution {fmt(o['in_distribution'])}, "
                f"OOD `{o['family']}` {fmt(o['ood'])} (shift {fmt(o['shift'])})"
            )
    lines += ["", "## Forgetting (sequential adaptation T1..Tn, then T1..Tn-1 re-measured)", ""]
    for e in report["checkpoints"]:
        f = e["forgetting"]
        if "reason" in f:
            lines.append(f"- {e['label']}: not measured ({f['reason']})")
            continue
        for scope in ("adapted", "frozen_body"):
            if scope in f:
                own = ", ".join(fmt(x, 3) for x in f[scope]["after_own"])
                last = ", ".join(fmt(x, 3) for x in f[scope]["after_last"])
                lines.append(
                    f"- {e['label']} [{scope}], n={f['length']}, {f['sequences']} sequences: "
                    f"own-task metric minus metric after T_n, mean over T1..Tn-1: "
                    f"{fmt(f[scope]['change'])}; right after T_i: {own}; after T_n: {last}"
                )
    lines += ["", "## Meta-validation convergence", ""]
    for e in report["checkpoints"]:
        c = e["convergence"]
        if "reason" in c:
            lines.append(f"- {e['label']}: not available ({c['reason']})")
        elif c["steps"]:
            lines.append(
                f"- {e['label']}: {c['column']} {c['values'][0]:.4f} at step {c['steps'][0]} -> "
                f"{c['values'][-1]:.4f} at step {c['steps'][-1]} ({len(c['steps'])} validations)"
            )
        else:
            lines.append(f"- {e['label']}: no validation rows in metrics.csv")
    lines += ["", "## Plots", ""]
    lines += [f"![{name}]({file})" for name, file in plots.items()]
    return "\n".join(lines) + "\n"
