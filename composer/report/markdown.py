"""``report.md``: the report's numbers as Markdown; skipped sections say why, diverged ones say so."""

from __future__ import annotations

import math

from metacompose.report.stats import DIVERGENCE_FACTOR
from metacompose.training.restart_record import describe_restarts


def fmt(e: dict | None, digits: int = 4, unit: str = "tasks") -> str:
    """``mean ± ci95`` of an estimate dict; ``diverged`` (with the count of ``unit``) or ``n/a``."""
    if e is None:
        return "n/a"
    if e.get("diverged") or e.get("mean") is None:
        k = e.get("n_diverged")
        return f"diverged ({k}/{e['n']} {unit})" if k and e.get("n") else "diverged"
    ci = e.get("ci95")
    if ci is None or (isinstance(ci, float) and math.isnan(ci)):
        return f"{e['mean']:.{digits}f}"
    return f"{e['mean']:.{digits}f} ± {ci:.{digits}f}"


def render_markdown(report: dict, plots: dict[str, str], skipped_plots: dict[str, str]) -> str:
    s = report["settings"]
    lines = [
        "# metacompose evaluation report",
        "",
        f"{s['n_tasks']} seeded meta-test tasks per measurement (task seed {s['seed']}); "
        "`±` is the half-width of a 95% interval over tasks (normal approximation) or, in "
        "'Over seeds', over training seeds (Student t). MSE: lower is better. 'diverged': the "
        "mean is not finite or exceeds "
        f"{DIVERGENCE_FACTOR:.0e} x the metric before adaptation (n/N: tasks that diverged).",
        "",
        "## Meta-test metric",
        "",
        "| checkpoint | family | algorithm | K | steps | metric | before adaptation | after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in report["checkpoints"]:
        a = e["adaptation"]
        before = {"mean": a["mean"][0], "ci95": a["ci95"][0], "diverged": a["diverged"][0]}
        steps, shown = e["inner_steps"], fmt(before)
        if "reason" in a:  # no adaptation steps (an in-context learner)
            steps, shown = "-", "n/a (reads the support set)"
        lines.append(
            f"| {e['label']} | {e['family']} | {e['algorithm']} | {e['shots']} | "
            f"{steps} | {e['metric']} | {shown} | {fmt(e['final'])} |"
        )
    for e in report["checkpoints"]:
        if "restart_banks" in e:  # the banks are not the trained ones: say so, and which
            lines.append(f"\n{e['label']}: {describe_restarts(e['restart_banks'])}")
    grouped = [e for e in report["checkpoints"] if "final_over_groups" in e]
    for e in grouped:  # after the table, once per grouped checkpoint
        g = e["final_over_groups"]
        lines.append(
            f"\n{e['label']}: grouped data, so the interval that counts is over the "
            f"{g['n_groups']} groups behind the {g['n_tasks']} tasks (mean of group means, "
            f"Student t): {_group_text(g)}"
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
            f"| {g['family']} | {g['algorithm']} | {g['seeds']} | {fmt(g['final'], unit='seeds')}{note} |"
        )
    lines += _sample_efficiency(report) + _generalisation(report) + _ood(report)
    lines += _forgetting(report) + _convergence(report)
    lines += ["", "## Plots", ""]
    lines += [f"![{name}]({file})" for name, file in plots.items()]
    lines += [f"- {name}: not drawn ({why})" for name, why in skipped_plots.items()]
    return "\n".join(lines) + "\n"


def _sample_efficiency(report: dict) -> list[str]:
    lines = ["", "## Sample efficiency (final metric vs K)", ""]
    for e in report["checkpoints"]:
        se = e["sample_efficiency"]
        cells = ", ".join(
            f"K={k}: {fmt({'mean': m, 'ci95': c, 'diverged': d})}"
            for k, m, c, d in zip(se["shots"], se["mean"], se["ci95"], se["diverged"])
        )
        skipped = "; ".join(f"K={k} skipped: {r}" for k, r in se["skipped"].items())
        lines.append(
            f"- {e['label']}: {cells or 'no K measured'}" + (f" ({skipped})" if skipped else "")
        )
    return lines


def _generalisation(report: dict) -> list[str]:
    lines = [
        "",
        "## Generalisation gap (meta-train tasks minus meta-test tasks)",
        "",
        "| checkpoint | meta-train tasks | meta-test tasks | gap |",
        "|---|---|---|---|",
    ]
    for e in report["checkpoints"]:
        g = e["generalisation"]
        lines.append(f"| {e['label']} | {fmt(g['train'])} | {fmt(g['test'])} | {fmt(g['gap'])} |")
    return lines


def _ood(report: dict) -> list[str]:
    lines = ["", "## Out-of-distribution tasks", ""]
    for e in report["checkpoints"]:
        o = e["ood"]
        if o.get("family") is None:
            lines.append(f"- {e['label']}: skipped ({o['reason']})")
        else:
            lines.append(
                f"- {e['label']}: in distribution {fmt(o['in_distribution'])}, "
                f"OOD `{o['family']}` {fmt(o['ood'])} (shift {fmt(o['shift'])})"
            )
    return lines


def _forgetting(report: dict) -> list[str]:
    lines = ["", "## Forgetting (sequential adaptation T1..Tn, then T1..Tn-1 re-measured)", ""]
    for e in report["checkpoints"]:
        f = e["forgetting"]
        if "reason" in f:
            lines.append(f"- {e['label']}: skipped ({f['reason']})")
            continue
        for scope in ("adapted", "frozen_body"):
            if scope not in f:
                continue
            if "reason" in f[scope]:
                lines.append(f"- {e['label']} [{scope}]: skipped ({f[scope]['reason']})")
                continue
            own = ", ".join(fmt(x, 3) for x in f[scope]["after_own"])
            last = ", ".join(fmt(x, 3) for x in f[scope]["after_last"])
            lines.append(
                f"- {e['label']} [{scope}], n={f['length']}, {f['sequences']} sequences: "
                f"own-task metric minus metric after T_n, mean over T1..Tn-1: "
                f"{fmt(f[scope]['change'])}; right after T_i: {own}; after T_n: {last}"
            )
    return lines


def _convergence(report: dict) -> list[str]:
    lines = ["", "## Meta-validation convergence", ""]
    for e in report["checkpoints"]:
        c = e["convergence"]
        if "reason" in c:
            lines.append(f"- {e['label']}: skipped ({c['reason']})")
        else:
            before = " (the model before its block restarts)" if "restart_banks" in e else ""
            lines.append(
                f"- {e['label']}: {c['column']} {c['values'][0]:.4f} at step {c['steps'][0]} -> "
                f"{c['values'][-1]:.4f} at step {c['steps'][-1]} ({len(c['steps'])} "
                f"validations){before}"
            )
    return lines


def _group_text(g: dict) -> str:
    if g["mean"] is None:
        return "diverged"
    ci = "n/a" if g["ci95"] is None else f"{g['ci95']:.4f}"
    return f"{g['mean']:.4f} ± {ci}"
