"""Write ``report.json``, ``report.md`` and the PNG plots of :func:`build_report` into a folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

from composer.report import plots as P
from composer.report.markdown import render_markdown


def _clean(x):
    """JSON-safe: NaN/inf become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write the report; returns the written files by name. Plots without data are left out."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = _clean(report)
    entries = report["checkpoints"]
    plots: dict[str, str] = {}
    jobs = [
        ("adaptation_speed", P.adaptation_plot, entries),
        ("sample_efficiency", P.sample_efficiency_plot, entries),
        ("generalisation_gap", P.generalisation_plot, entries),
        ("ood", P.ood_plot, [e for e in entries if e["ood"].get("family")]),
        ("forgetting", P.forgetting_plot, [e for e in entries if "reason" not in e["forgetting"]]),
        ("convergence", P.convergence_plot,
         [e for e in entries if e["convergence"].get("steps")]),
    ]  # fmt: skip
    for name, fn, subset in jobs:
        if subset:
            fn(subset, out / f"{name}.png")
            plots[name] = f"{name}.png"
    report["plots"] = plots
    (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    (out / "report.md").write_text(render_markdown(report, plots))
    files = {"report.json": out / "report.json", "report.md": out / "report.md"}
    files.update({n: out / f for n, f in plots.items()})
    return files
