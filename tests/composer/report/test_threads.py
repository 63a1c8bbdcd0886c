"""``build_report`` measures with ``settings.threads`` torch threads and restores the count after."""

import pytest
import torch

from metacompose.report import ReportSettings, build
from metacompose.report.build import torch_threads


@pytest.mark.parametrize("threads, inside", [(1, 1), (3, 3), (None, "unchanged")])
def test_build_report_sets_and_restores_threads(threads, inside, monkeypatch):
    torch.set_num_threads(2)
    seen = []

    def fake(path, settings):
        seen.append(torch.get_num_threads())
        return {"group": "g", "family": "f", "algorithm": "a", "metric": "mse", "seed": 0,
                "final": {"mean": 1.0, "ci95": None, "n": 2, "diverged": False}}  # fmt: skip

    monkeypatch.setattr(build, "load_for_report", lambda path: path)
    monkeypatch.setattr(build, "evaluate_checkpoint", fake)
    report = build.build_report(["a.ckpt", "b.ckpt"], ReportSettings(threads=threads))
    assert seen == [2 if inside == "unchanged" else inside] * 2
    assert torch.get_num_threads() == 2 and report["settings"]["threads"] == threads
    torch.set_num_threads(1)  # conftest's setting


def test_torch_threads_restores_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(before + 1):
        raise RuntimeError
    assert torch.get_num_threads() == before
