"""PNG plots of a report (matplotlib, Agg backend). One function per plot; one panel per metric."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator


def _ci(values: list) -> list[float]:
    return [0.0 if v is None else float(v) for v in values]


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


def adaptation_plot(entries: list[dict], path: Path) -> Path:
    fig, axes = _panels(entries, "Adaptation speed: meta-test metric vs inner steps (95% CI)")
    for e in entries:
        ax, c = axes[e["metric"]], e["adaptation"]
        lo = [m - d for m, d in zip(c["mean"], _ci(c["ci95"]))]
        hi = [m + d for m, d in zip(c["mean"], _ci(c["ci95"]))]
        ax.plot(c["steps"], c["mean"], marker="o", ms=3, label=e["label"])
        ax.fill_between(c["steps"], lo, hi, alpha=0.2)
    for m, ax in axes.items():
        ax.set(xlabel="inner steps", ylabel=_ylabel(m))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    return _save(fig, path)


def sample_efficiency_plot(entries: list[dict], path: Path) -> Path:
    fig, axes = _panels(entries, "Sample efficiency: meta-test metric vs shots K (95% CI)")
    for e in entries:
        s = e["sample_efficiency"]
        axes[e["metric"]].errorbar(s["shots"], s["mean"], yerr=_ci(s["ci95"]), marker="o",
                                   capsize=3, label=e["label"])  # fmt: skip
    for m, ax in axes.items():
        ax.set(xlabel="shots K", ylabel=_ylabel(m))
        ax.legend(fontsize=7)
    return _save(fig, path)


def _paired_bars(entries: list[dict], path: Path, title: str, pick) -> Path:
    fig, axes = _panels(entries, title)
    for m, ax in axes.items():
        group = [e for e in entries if e["metric"] == m]
        names = None
        for i, e in enumerate(group):
            pairs = pick(e)
            names = [n for n, _ in pairs]
            for j, (_, est) in enumerate(pairs):
                ax.bar(i + 0.38 * j, est["mean"], width=0.36, yerr=_ci([est["ci95"]])[0],
                       capsize=3, color=f"C{j}")  # fmt: skip
        ax.set_xticks([i + 0.19 for i in range(len(group))])
        ax.set_xticklabels([e["label"] for e in group], rotation=15, fontsize=7)
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


def forgetting_plot(entries: list[dict], path: Path) -> Path:
    fig, axes = _panels(entries, "Forgetting: metric on T_i right after it vs after T_n")
    for k, e in enumerate(entries):
        f, ax = e["forgetting"], axes[e["metric"]]
        for scope, style in (("adapted", "-"), ("frozen_body", "--")):
            if scope not in f:
                continue
            n = len(f[scope]["after_own"])
            xs = list(range(1, n + 1))
            ax.errorbar(
                xs,
                [x["mean"] for x in f[scope]["after_own"]],
                yerr=_ci([x["ci95"] for x in f[scope]["after_own"]]),
                color=f"C{k}",
                ls=":",
                marker="o",
                ms=3,
                capsize=2,
                label=f"{e['label']} [{scope}] after own task",
            )
            ax.errorbar(xs, [x["mean"] for x in f[scope]["after_last"]],
                        yerr=_ci([x["ci95"] for x in f[scope]["after_last"]]), color=f"C{k}",
                        ls=style, marker="s", ms=3, capsize=2,
                        label=f"{e['label']} [{scope}] after T_n")  # fmt: skip
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
