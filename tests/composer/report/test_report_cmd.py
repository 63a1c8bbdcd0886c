"""``metacompose report`` end to end on tiny sinusoid checkpoints trained in a fixture."""

import json
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from metacompose.cli.main import main
from metacompose.config import load_config
from metacompose.training import train

ROOT = Path(__file__).resolve().parents[3]
TINY = [
    "data.meta_batch_size=4",
    "data.val_tasks=4",
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
    "trainer.log_every_n_steps=1",
    "trainer.checkpoint_every_n_steps=3",
    "trainer.enable_progress_bar=false",
    "model.args.hidden=[8,8]",
    "algo.eval_inner_steps=3",
]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    paths = []
    for seed in (0, 1):
        cfg = load_config(ROOT / "configs" / "sinusoid.yaml",
                          [*TINY, f"out_dir={out}", f"name=s{seed}", f"seed={seed}"])  # fmt: skip
        paths.append(train(cfg, config_name="tiny").checkpoint)
    return paths


def test_report_end_to_end(checkpoints, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["report", *map(str, checkpoints), "--out", str(out), "--tasks", "6",
            "--shots", "2", "5", "--forgetting-length", "3", "--forgetting-sequences", "4"]  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert [e["label"] for e in report["checkpoints"]] == ["s0", "s1"]
    e = report["checkpoints"][0]
    assert e["adaptation"]["steps"] == [0, 1, 2, 3] and len(e["adaptation"]["ci95"]) == 4
    assert e["sample_efficiency"]["shots"] == [2, 5]
    assert e["ood"]["family"] == "sinusoid" and e["ood"]["ood"]["n"] == 6
    assert set(e["forgetting"]) >= {"adapted", "frozen_body"}
    assert len(e["forgetting"]["adapted"]["after_last"]) == 3
    assert e["convergence"]["steps"] == [2, 5] and len(e["convergence"]["values"]) == 2
    # The same seeded tasks for both checkpoints; the two seeds form one group with a t-interval.
    (group,) = report["over_seeds"]
    assert group["seeds"] == [0, 1] and group["final"]["n"] == 2 and group["final"]["ci95"] > 0
    for name in ("adaptation_speed", "sample_efficiency", "generalisation_gap", "ood", "forgetting",
                 "convergence"):  # fmt: skip
        img = mpimg.imread(out / f"{name}.png")
        assert img.shape[0] > 200 and img.shape[1] > 300 and img.std() > 0.01
    md = (out / "report.md").read_text()
    assert "OOD `sinusoid`" in md and "![forgetting](forgetting.png)" in md


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    want = f"metacompose report: error: {tmp_path / 'nope.ckpt'}: checkpoint not found"
    assert err == want  # the wording of eval, inspect and verify


def test_one_checkpoint_twice_is_refused_in_one_line(checkpoints, tmp_path, capsys):
    out = tmp_path / "report"
    twice = [str(checkpoints[0]), str(checkpoints[0].parent / ".." / "checkpoints" / "last.ckpt")]
    assert main(["report", *twice, "--out", str(out), "--tasks", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is given twice" in err and "\n" not in err and not out.exists()


def test_runs_that_share_their_seed_count_as_one_seed():
    from metacompose.report.build import seed_summaries

    def entry(seed, mean):
        return {"group": "g", "family": "sinusoid", "algorithm": "maml", "metric": "mse",
                "seed": seed, "final": {"mean": mean}}  # fmt: skip

    (same,) = seed_summaries([entry(0, 4.7), entry(0, 4.7)])
    assert same["seeds"] == [0] and same["final"]["n"] == 1 and same["final"]["ci95"] != 0
    (two,) = seed_summaries([entry(0, 1.0), entry(1, 3.0), entry(0, 1.0)])
    assert two["seeds"] == [0, 1] and two["final"]["n"] == 2 and two["final"]["mean"] == 2.0
