"""Write ``report.json``, ``report.md`` and the PNG plots of :func:`build_report` into a folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

from metacompose.progress import track
from metacompose.report import plots as P
from metacompose.report.markdown import render_markdown


def _clean(x):
    """JSON-safe: NaN/inf become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _plot_jobs(entries: list[dict]) -> list[tuple[str, object, list[dict], str]]:
    """``(name, plot function, checkpoints with data, why none has data)`` per plot."""
    return [
        ("adaptation_speed", P.adaptation_plot, entries, ""),
        ("sample_efficiency", P.sample_efficiency_plot,
         [e for e in entries if e["sample_efficiency"]["shots"]], "no K could be measured"),
        ("generalisation_gap", P.generalisation_plot, entries, ""),
        ("ood", P.ood_plot, [e for e in entries if e["ood"].get("family")],
         "no checkpoint has an out-of-distribution family (report.ood_family)"),
        ("forgetting", P.forgetting_plot,
         [e for e in entries if any(True for _ in P.forgetting_scopes(e))],
         "forgetting was measured for no checkpoint"),
        ("convergence", P.convergence_plot, [e for e in entries if "reason" not in e["convergence"]],
         "no checkpoint has meta-validation rows in its metrics.csv"),
    ]  # fmt: skip


def write_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write the report; returns the written files by name. Plots without data are left out, with
    the reason in ``report.json`` (``plots_skipped``) and ``report.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = _clean(report)
    plots: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name, fn, subset, why in track(_plot_jobs(report["checkpoints"]), desc="report: plots",
                                       unit="plot"):  # fmt: skip
        if subset:
            fn(subset, out / f"{name}.png")
            plots[name] = f"{name}.png"
        else:
            skipped[name] = why
    report["plots"] = plots
    report["plots_skipped"] = skipped
    (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    (out / "report.md").write_text(render_markdown(report, plots, skipped))
    files = {"report.json": out / "report.json", "report.md": out / "report.md"}
    files.update({n: out / f for n, f in plots.items()})
    return files
