"""``metacompose report`` on a tiny checkpoint of every kind the project makes: sinusoid, routed
compositional, grouped regression (the shipped ChickWeight fixture) and few-shot classification
(digits). Every file is written; sections that do not apply say why instead of crashing."""

import json
from pathlib import Path

import matplotlib.image as mpimg
import pytest
import yaml
from omegaconf import OmegaConf

from metacompose.cli.main import main
from metacompose.config import load_config
from metacompose.training import train

ROOT = Path(__file__).resolve().parents[3]
FIX = ROOT / "tests" / "fixtures" / "grouped"
TINY = [
    "data.meta_batch_size=4",
    "data.val_tasks=4",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "trainer.checkpoint_every_n_steps=2",
    "trainer.enable_progress_bar=false",
    "algo.eval_inner_steps=2",
]
REPORT = ["--tasks", "4", "--steps", "2", "--forgetting-length", "2", "--forgetting-sequences", "2"]


def digits_config(folder: Path) -> Path:
    """configs/glyphs_5way1shot.yaml on scikit-learn's digits (no rendered glyph cache needed)."""
    raw = OmegaConf.to_container(load_config(ROOT / "configs" / "glyphs_5way1shot.yaml"))
    raw["task"] = {**raw["task"], "family": "digits", "args": {"ways": 5, "size": 28}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "digits_5way1shot.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def kind_config(kind: str, folder: Path) -> tuple[Path, list[str]]:
    if kind == "sinusoid":
        return ROOT / "configs" / "sinusoid.yaml", ["model.args.hidden=[8,8]"]
    if kind == "routed":
        return ROOT / "configs" / "compositional.yaml", []
    if kind == "grouped":  # ChickWeight groups have >= 12 rows: K=10 + 5 query points cannot fit
        return ROOT / "configs" / "mathachieve.yaml", [
            f"task.args.spec={FIX / 'chickweight.yaml'}", "model.args.in_features=1",
            "model.args.hidden=[8,8]", "task.query=5",
        ]  # fmt: skip
    assert kind == "classification"  # Fashion-MNIST (the OOD family) pointed at an empty folder
    return digits_config(folder), [
        "model.args.filters=4", "model.args.depth=2", "data.meta_batch_size=2",
        f"report.ood_args.root={folder / 'no-fashion-mnist'}",
    ]  # fmt: skip


def tiny_checkpoint(kind: str, folder: Path) -> str:
    path, extra = kind_config(kind, folder)
    cfg = load_config(path, [*TINY, *extra, f"out_dir={folder}", f"name={kind}"])
    return str(train(cfg, config_name=kind).checkpoint)


def check_files(out: Path, stdout: str) -> dict:
    """report.json / report.md valid, every listed PNG a real image, stdout = the files written."""
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    assert md.startswith("# metacompose evaluation report")
    for name, file in report["plots"].items():
        img = mpimg.imread(out / file)
        assert img.shape[0] > 200 and img.shape[1] > 300 and img.std() > 0.01, name
        assert f"![{name}]({file})" in md
    for name, why in report["plots_skipped"].items():
        assert not (out / f"{name}.png").exists() and f"- {name}: not drawn ({why})" in md
    written = {"report.json", "report.md", *report["plots"]}
    assert {line.split(": ")[0] for line in stdout.strip().splitlines()} == written
    return report


@pytest.mark.parametrize("kind", ["sinusoid", "routed", "grouped", "classification"])
def test_report_on_every_kind_of_checkpoint(kind, tmp_path, capsys, monkeypatch):
    ckpt = tiny_checkpoint(kind, tmp_path)
    capsys.readouterr()
    monkeypatch.setenv("METACOMPOSE_PROGRESS", "1")
    out = tmp_path / "report"
    assert main(["report", ckpt, "--out", str(out), *REPORT]) == 0
    streams = capsys.readouterr()
    assert "report" in streams.err and "measurement" in streams.err  # the bar, on stderr only
    report = check_files(out, streams.out)
    (e,) = report["checkpoints"]
    md = (out / "report.md").read_text()
    assert e["adaptation"]["steps"] == [0, 1, 2] and e["final"]["n"] == 4
    assert set(report["plots"]) >= {"adaptation_speed", "generalisation_gap", "convergence"}
    if kind == "sinusoid":
        assert e["ood"]["family"] == "sinusoid" and e["ood"]["ood"]["n"] == 4
        assert set(e["forgetting"]) == {"length", "sequences", "adapted", "frozen_body"}
        assert e["sample_efficiency"]["shots"] == [1, 5, 10] and "ood" in report["plots"]
    if kind == "routed":
        assert e["algorithm"] == "maml+router" and e["family"] == "compositional"
        assert "sequential adaptation not supported" in e["forgetting"]["reason"]
        assert e["ood"] == {"family": None, "reason": "no report.ood_family in the run's config"}
        assert set(report["plots_skipped"]) == {"ood", "forgetting"}
        assert "forgetting: not drawn" in md and "skipped (RoutedMetaLearner" in md
    if kind == "grouped":
        se = e["sample_efficiency"]
        assert e["family"] == "chickweight" and se["shots"] == [2, 5]
        assert list(se["skipped"]) == ["10"] and "K=10 skipped" in md
        assert e["forgetting"]["adapted"]["after_last"][0]["n"] == 2
        g = e["final_over_groups"]  # the interval over the independent unit: groups
        assert 2 <= g["n_groups"] <= g["n_tasks"] == 4 and g["interval"].startswith("student_t")
        assert f"over the {g['n_groups']} groups behind the 4 tasks" in md
    else:
        assert "final_over_groups" not in e
    if kind == "classification":
        assert e["metric"] == "accuracy" and e["family"].startswith("digits")
        assert e["ood"]["family"] is None and "Fashion-MNIST not found" in e["ood"]["reason"]
        assert "skipped (report.ood_args of fashion_mnist: Fashion-MNIST not found" in md
        assert all(0 <= m <= 1 for m in e["adaptation"]["mean"])


def test_a_grouped_checkpoint_beside_another_keeps_the_table_whole(tmp_path, capsys):
    """Two checkpoints, the first grouped: both rows stay in one table, and the grouped note comes
    once, after it."""
    ckpts = [tiny_checkpoint(kind, tmp_path) for kind in ("grouped", "sinusoid")]
    out = tmp_path / "report"
    assert main(["report", *ckpts, "--out", str(out), *REPORT]) == 0
    capsys.readouterr()
    md = (out / "report.md").read_text().splitlines()
    head = md.index(
        "| checkpoint | family | algorithm | K | steps | metric | before adaptation | after |"
    )
    rows = md[head + 2 : head + 4]
    assert all(r.startswith("| ") for r in rows) and {r.split(" | ")[1] for r in rows} == {
        "chickweight", "sinusoid"
    }  # fmt: skip
    notes = [line for line in md if "grouped data, so the interval that counts" in line]
    assert len(notes) == 1 and md.index(notes[0]) > head + 3
