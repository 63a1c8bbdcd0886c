"""Diverged estimates: marked in report.json, report.md and the plots, never drawn as numbers."""

import json
import math

import pytest
import torch

from metacompose.report import plots as P
from metacompose.report import write_report
from metacompose.report.build import curve_summary, final_summary
from metacompose.report.stats import DIVERGENCE_FACTOR, difference, over_seeds, over_tasks


def test_over_tasks_marks_divergence():
    ok = over_tasks(torch.tensor([1.0, 2.0, 3.0]), reference=2.0)
    assert not ok.diverged and ok.n_diverged == 0 and ok.to_json_dict()["diverged"] is False
    big = over_tasks(torch.tensor([1.0, 1.0, 5e32, 1e33]), reference=2.0)
    assert big.diverged and big.n_diverged == 2
    assert big.to_json_dict() == {"mean": None, "ci95": None, "n": 4, "diverged": True,
                                  "n_diverged": 2}  # fmt: skip
    assert over_tasks(torch.tensor([1.0, float("nan")])).diverged
    assert over_tasks(torch.tensor([1.0, float("inf")])).diverged
    # just under the factor: a (bad) number, not a divergence; one task over it is counted
    under = over_tasks(
        torch.tensor([0.5 * DIVERGENCE_FACTOR, 2.5 * DIVERGENCE_FACTOR]), reference=2.0
    )
    assert not under.diverged and under.n_diverged == 1
    assert difference(big, ok).diverged and not difference(ok, ok).diverged
    assert over_seeds([0.5, None]).diverged and over_seeds([0.5, float("nan")]).diverged
    assert over_seeds([0.5, None]).to_json_dict()["mean"] is None


def est(mean: float, ci: float = 0.1, n: int = 4) -> dict:
    return {"mean": mean, "ci95": ci, "n": n, "diverged": False}


def synthetic_entry() -> dict:
    """One checkpoint whose K=1 adaptation diverged (mean ~4e32) while K=5 and K=10 did not."""
    steps = torch.tensor([[2.0, 2.2, 1.8, 2.0], [1.0, 1.1, 0.9, 1.0], [0.5, 0.6, 0.4, 0.5]],
                         dtype=torch.float64)  # fmt: skip
    k1 = steps.clone()
    k1[2] = torch.tensor([5e32, 1e33, 1.0, 2.0])
    finals = [final_summary(k1), final_summary(steps), final_summary(steps * 0.5)]
    eff = {"shots": [1, 5, 10], "skipped": {}}
    eff.update({key: [f[key] for f in finals] for key in ("mean", "ci95", "diverged")})
    diverged = final_summary(k1)
    return {
        "path": "x/checkpoints/last.ckpt", "label": "run", "group": "g", "seed": 0,
        "family": "sinusoid", "metric": "mse", "algorithm": "maml", "shots": 10, "query": 10,
        "inner_steps": 2, "final": final_summary(steps), "adaptation": curve_summary(k1),
        "sample_efficiency": eff,
        "generalisation": {"train": est(0.4), "test": est(0.5), "gap": est(-0.1, 0.14)},
        "ood": {"family": "sinusoid", "in_distribution": est(0.5), "ood": diverged,
                "shift": diverged},
        "forgetting": {"length": 2, "sequences": 4,
                       "adapted": {"after_own": [est(0.5), est(0.6)],
                                   "after_last": [diverged, est(0.6)], "change": diverged}},
        "convergence": {"column": "val/query_mse", "steps": [1, 2], "values": [3.0, 2.0]},
    }  # fmt: skip


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions save, by file name."""
    saved = {}
    save = P._save

    def keep(fig, path):
        saved[path.stem] = fig
        return save(fig, path)

    monkeypatch.setattr(P, "_save", keep)
    return saved


def diverged_marks(ax) -> list[float]:
    """x of the triangles drawn at the top edge by ``_mark_diverged``."""
    return [x for line in ax.lines if line.get_marker() == "^" for x in line.get_xdata()]


def test_synthetic_report_with_a_diverged_estimate(tmp_path, figures):
    report = {"settings": {"n_tasks": 4, "seed": 0}, "checkpoints": [synthetic_entry()],
              "over_seeds": [{"group": "g", "family": "sinusoid", "algorithm": "maml",
                              "metric": "mse", "seeds": [0], "final": est(0.5)}]}  # fmt: skip
    files = write_report(report, tmp_path)
    assert set(files) == {"report.json", "report.md", "adaptation_speed", "sample_efficiency",
                          "generalisation_gap", "ood", "forgetting", "convergence"}  # fmt: skip
    e = json.loads((tmp_path / "report.json").read_text())["checkpoints"][0]
    se = e["sample_efficiency"]
    assert se["diverged"] == [True, False, False] and se["mean"][0] is None
    assert math.isclose(se["mean"][1], 0.5) and math.isclose(se["mean"][2], 0.25)
    assert (
        e["adaptation"]["diverged"] == [False, False, True] and e["adaptation"]["mean"][2] is None
    )
    assert e["ood"]["ood"] == {"mean": None, "ci95": None, "n": 4, "diverged": True,
                               "n_diverged": 2}  # fmt: skip
    md = (tmp_path / "report.md").read_text()
    assert "K=1: diverged, K=5: 0.5000 ± " in md
    assert "OOD `sinusoid` diverged (2/4 tasks) (shift diverged (2/4 tasks))" in md
    assert "| run | sinusoid | maml | 10 | 2 | mse | 2.0000 ± " in md

    ax = figures["sample_efficiency"].axes[0]
    assert diverged_marks(ax) == [1] and any(t.get_text() == "diverged" for t in ax.texts)
    assert ax.get_yscale() == "linear" and ax.get_ylim()[1] < 1  # K=5, 10 are not flattened
    ax = figures["adaptation_speed"].axes[0]
    assert diverged_marks(ax) == [2] and ax.get_ylim()[1] < 5
    ax = figures["ood"].axes[0]
    assert len(ax.patches) == 1 and diverged_marks(ax) == [pytest.approx(0.38)]
    ax = figures["forgetting"].axes[0]
    assert diverged_marks(ax) == [1] and ax.get_ylim()[1] < 1


def test_values_spanning_orders_of_magnitude_get_a_log_axis(tmp_path, figures):
    e = synthetic_entry()
    e["sample_efficiency"].update(mean=[1e3, 1.0, 1e-2], diverged=[False] * 3, ci95=[5e2, 0.5, 0.1])
    P.sample_efficiency_plot([e], tmp_path / "sample_efficiency.png")
    ax = figures["sample_efficiency"].axes[0]
    assert ax.get_yscale() == "log" and not diverged_marks(ax)
    lo, hi = ax.get_ylim()
    assert lo < 1e-2 and hi > 1e3
