"""PNG plots of a report (matplotlib, Agg backend). One function per plot; one panel per metric.

A diverged estimate (``"diverged": true``, mean null) is never drawn as a number: it is left out
and marked by a red triangle and the word "diverged" at the top edge of its panel. An MSE panel
whose values span more than ``LOG_SPAN`` is drawn on a log axis.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

LOG_SPAN = 100.0  # max / min of the finite positive means beyond which an MSE axis is logarithmic


def _values(xs: list) -> np.ndarray:
    """Floats with ``None`` as NaN (matplotlib leaves NaN points out)."""
    return np.array([np.nan if v is None else float(v) for v in xs], dtype=float)


def _unpack(ests: list[dict]) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """``(means, ci95s, diverged)`` of estimate dicts; diverged means are NaN."""
    div = [bool(e.get("diverged")) or e.get("mean") is None for e in ests]
    means = _values([None if d else e["mean"] for e, d in zip(ests, div)])
    cis = np.nan_to_num(_values([None if d else e.get("ci95") for e, d in zip(ests, div)]))
    return means, cis, div


def _wants_log(metric: str, means: list[float]) -> bool:
    v = np.array([m for m in means if m is not None and np.isfinite(m) and m > 0])
    return metric == "mse" and v.size > 1 and v.max() / v.min() > LOG_SPAN


def _band(means: np.ndarray, cis: np.ndarray, log: bool) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper ends of the intervals; on a log axis the lower end stays positive."""
    lo, hi = means - cis, means + cis
    if log:
        lo = np.maximum(lo, means * 1e-3)
    return lo, hi


def _mark_diverged(ax, xs: list, color: str = "red") -> None:
    """Triangles at the top edge of ``ax`` above each of ``xs`` (data x), "diverged" by the first."""
    if not xs:
        return
    edge = ax.get_xaxis_transform()  # x in data, y in axes coordinates
    ax.plot(xs, [0.97] * len(xs), transform=edge, ls="none", marker="^", ms=8, color=color,
            clip_on=False)  # fmt: skip
    ax.annotate("diverged", (xs[0], 0.97), xycoords=edge, xytext=(0, -14),
                textcoords="offset points", ha="center", fontsize=7, color=color)  # fmt: skip


def _panels(entries: list[dict], title: str):
    metrics = sorted({e["metric"] for e in entries})
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    fig.suptitle(title)
    return fig, dict(zip(metrics, axes[0]))


def _ylabel(metric: str) -> str:
    return "query MSE (lower is better)" if metric == "mse" else "query accuracy"


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _log_axes(entries: list[dict], axes: dict, means_of) -> dict[str, bool]:
    """Per metric panel: log scale when its MSE means span orders of magnitude (set on the axes)."""
    out = {}
    for m, ax in axes.items():
        out[m] = _wants_log(m, [x for e in entries if e["metric"] == m for x in means_of(e)])
        if out[m]:
            ax.set_yscale("log")
    return out


def adaptation_plot(entries: list[dict], path: Path) -> Path:
    fig, axes = _panels(entries, "Adaptation speed: meta-test metric vs inner steps (95% CI)")
    log = _log_axes(entries, axes, lambda e: e["adaptation"]["mean"])
    for k, e in enumerate(entries):
        ax, c = axes[e["metric"]], e["adaptation"]
        means, cis = _values(c["mean"]), np.nan_to_num(_values(c["ci95"]))
        lo, hi = _band(means, cis, log[e["metric"]])
        ax.plot(c["steps"], means, marker="o", ms=3, color=f"C{k}", label=e["label"])
        ax.fill_between(c["steps"], lo, hi, alpha=0.2, color=f"C{k}")
        _mark_diverged(ax, [s for s, d in zip(c["steps"], c["diverged"]) if d], color=f"C{k}")
    for m, ax in axes.items():
        ax.set(xlabel="inner steps", ylabel=_ylabel(m))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    return _save(fig, path)


def sample_efficiency_plot(entries: list[dict], path: Path) -> Path:
    fig, axes = _panels(entries, "Sample efficiency: meta-test metric vs shots K (95% CI)")
    log = _log_axes(entries, axes, lambda e: e["sample_efficiency"]["mean"])
    for k, e in enumerate(entries):
        s, ax = e["sample_efficiency"], axes[e["metric"]]
        means, cis = _values(s["mean"]), np.nan_to_num(_values(s["ci95"]))
        lo, hi = _band(means, cis, log[e["metric"]])
        ax.errorbar(s["shots"], means, yerr=[means - lo, hi - means], marker="o", capsize=3,
                    color=f"C{k}", label=e["label"])  # fmt: skip
        _mark_diverged(ax, [x for x, d in zip(s["shots"], s["diverged"]) if d], color=f"C{k}")
    for m, ax in axes.items():
        ax.set(xlabel="shots K", ylabel=_ylabel(m))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    return _save(fig, path)


def _paired_bars(entries: list[dict], path: Path, title: str, pick) -> Path:
    fig, axes = _panels(entries, title)
    log = _log_axes(entries, axes, lambda e: [est["mean"] for _, est in pick(e)])
    for m, ax in axes.items():
        group = [e for e in entries if e["metric"] == m]
        names = None
        for i, e in enumerate(group):
            pairs = pick(e)
            names = [n for n, _ in pairs]
            means, cis, div = _unpack([est for _, est in pairs])
            lo, hi = _band(means, cis, log[m])
            for j in range(len(pairs)):
                x = i + 0.38 * j
                if div[j]:
                    _mark_diverged(ax, [x], color=f"C{j}")
                    continue
                ax.bar(x, means[j], width=0.36, yerr=[[means[j] - lo[j]], [hi[j] - means[j]]],
                       capsize=3, color=f"C{j}")  # fmt: skip
        ax.set_xticks([i + 0.19 for i in range(len(group))])
        ax.set_xticklabels([e["label"] for e in group], rotation=15, fontsize=7)
        ax.set_xlim(-0.5, len(group) - 0.1)
        ax.set_ylabel(_ylabel(m))
        if names:
            ax.legend([plt.Rectangle((0, 0), 1, 1, color=f"C{j}") for j in range(len(names))],
                      names, fontsize=7, loc="lower right")  # fmt: skip
    return _save(fig, path)


def generalisation_plot(entries: list[dict], path: Path) -> Path:
    def pick(e):
        g = e["generalisation"]
        return [("meta-train tasks", g["train"]), ("meta-test tasks", g["test"])]

    return _paired_bars(entries, path, "Generalisation gap: meta-train vs meta-test tasks", pick)


def ood_plot(entries: list[dict], path: Path) -> Path:
    def pick(e):
        o = e["ood"]
        return [("in distribution", o["in_distribution"]), (f"OOD: {o['family']}", o["ood"])]

    return _paired_bars(entries, path, "Out-of-distribution tasks (95% CI)", pick)


def forgetting_scopes(e: dict):
    """``(scope, line style, data)`` of the forgetting scopes of ``e`` that were measured."""
    f = e["forgetting"]
    for scope, style in (("adapted", "-"), ("frozen_body", "--")):
        if scope in f and "reason" not in f[scope]:
            yield scope, style, f[scope]


def forgetting_plot(entries: list[dict], path: Path) -> Path:
    fig, axes = _panels(entries, "Forgetting: metric on T_i right after it vs after T_n")

    def means_of(e):
        return [x["mean"] for _, _, f in forgetting_scopes(e)
                for x in f["after_own"] + f["after_last"]]  # fmt: skip

    log = _log_axes(entries, axes, means_of)
    for k, e in enumerate(entries):
        ax = axes[e["metric"]]
        for scope, style, f in forgetting_scopes(e):
            for key, ls, marker, what in (("after_own", ":", "o", "after own task"),
                                          ("after_last", style, "s", "after T_n")):  # fmt: skip
                xs = list(range(1, len(f[key]) + 1))
                means, cis, div = _unpack(f[key])
                lo, hi = _band(means, cis, log[e["metric"]])
                ax.errorbar(xs, means, yerr=[means - lo, hi - means], color=f"C{k}", ls=ls,
                            marker=marker, ms=3, capsize=2,
                            label=f"{e['label']} [{scope}] {what}")  # fmt: skip
                _mark_diverged(ax, [x for x, d in zip(xs, div) if d], color=f"C{k}")
    for m, ax in axes.items():
        ax.set(xlabel="task i in the sequence", ylabel=_ylabel(m))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=6)
    return _save(fig, path)


def convergence_plot(entries: list[dict], path: Path) -> Path:
    fig, axes = _panels(entries, "Meta-validation metric vs meta-iterations (metrics.csv)")
    for e in entries:
        c = e["convergence"]
        axes[e["metric"]].plot(c["steps"], c["values"], marker="o", ms=3, label=e["label"])
    for m, ax in axes.items():
        ax.set(xlabel="meta-iteration", ylabel=_ylabel(m).replace("query", "meta-val query"))
        if m == "mse":
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    return _save(fig, path)
