"""A run's checkpoints remember the grouped data they were trained on: a spec or CSV edited since
is refused by every command that loads the checkpoint (other groups in meta-test could be groups
the model trained on), while the same file rewritten, or moved with the run, still loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from metacompose.cli.main import main
from metacompose.config import ConfigError, load_config
from metacompose.tasks.grouped import grouped_family_from_yaml
from metacompose.tasks.provenance import changed_data, provenance_change
from metacompose.training import train

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "tests" / "fixtures" / "grouped"
TINY = [
    "data.meta_batch_size=4", "data.val_tasks=4", "trainer.max_steps=2",
    "trainer.val_check_interval=2", "trainer.enable_progress_bar=false",
    "algo.eval_inner_steps=2", "model.args.in_features=1", "model.args.hidden=[8]",
    "task.query=5",
]  # fmt: skip


def copy_spec(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE / "chickweight.csv", folder / "chickweight.csv")
    shutil.copy(FIXTURE / "chickweight.yaml", folder / "spec.yaml")
    return folder / "spec.yaml"


def test_what_differs_is_said_arguments_before_digests(tmp_path):
    spec = copy_spec(tmp_path)
    a = grouped_family_from_yaml(spec).provenance
    assert provenance_change(a, grouped_family_from_yaml(spec).provenance) is None  # rebuilt
    other_seed = grouped_family_from_yaml(spec, split_seed=1).provenance
    assert a["splits"] != other_seed["splits"] and a["rows"] == other_seed["rows"]
    assert provenance_change(a, other_seed) == "split_seed 0 -> 1"
    fewer = grouped_family_from_yaml(spec, min_rows=12).provenance
    assert provenance_change(a, fewer) is None  # the spec's own value, given again
    # a row removed from the CSV: no argument differs, the rows per group do
    lines = (tmp_path / "chickweight.csv").read_text().splitlines()
    (tmp_path / "chickweight.csv").write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    assert provenance_change(a, grouped_family_from_yaml(spec).provenance) in (
        "the rows per group differ",
        "the groups in meta-train / meta-val / meta-test differ",
    )
    # keys only one side has are not compared (older or newer checkpoints)
    assert provenance_change({**a, "new_key": 1}, a) is None
    assert changed_data(None, grouped_family_from_yaml(spec), source="x") is None


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run trained on a spec outside the repository (the user's own data)."""
    root = tmp_path_factory.mktemp("provenance")
    spec = copy_spec(root / "data")
    cfg = load_config(ROOT / "configs" / "mathachieve.yaml",
                      [*TINY, f"task.args.spec={spec}", f"out_dir={root / 'runs'}", "name=r"])  # fmt: skip
    result = train(cfg, config_name="grouped")
    return {"spec": spec, "checkpoint": result.checkpoint, "cfg": cfg, "root": root}


def test_an_edited_spec_is_refused_by_every_command_in_one_line(run, capsys):
    spec, ckpt = run["spec"], run["checkpoint"]
    original = spec.read_text()
    out = run["root"] / "out"
    commands = {
        "eval": ["eval", str(ckpt), "--tasks", "4"],
        "report": ["report", str(ckpt), "--tasks", "4", "--out", str(out / "report")],
        "inspect": ["inspect", str(ckpt), "--tasks", "2", "--out", str(out / "inspect")],
        "verify": ["verify", str(ckpt), "--tasks", "2"],
    }
    try:
        spec.write_text(original.replace("split_seed: 0", "split_seed: 1"))
        for name, argv in commands.items():
            assert main(argv) == 2, name
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and "Traceback" not in err, (name, err)
            assert err.count(str(ckpt)) <= 1 and "cannot rebuild" not in err, (name, err)
            assert f"the data task.args.spec {spec} describes changed since the run was " in err
            assert "(split_seed 0 -> 1)" in err and "groups it trained on" in err, (name, err)
        assert not out.exists()  # refused before any output folder
        with pytest.raises(ConfigError, match=r"--resume .*\(split_seed 0 -> 1\)"):
            train(load_config(ROOT / "configs" / "mathachieve.yaml",
                              [*TINY, f"task.args.spec={spec}", f"out_dir={run['root'] / 'runs'}",
                               "name=r", "trainer.max_steps=3"]),
                  resume=run["root"] / "runs" / "r", config_name="grouped")  # fmt: skip
    finally:
        spec.write_text(original)
    assert main(["eval", str(ckpt), "--tasks", "4"]) == 0  # the same file again: loads
    capsys.readouterr()
    data = spec.parent / "chickweight.csv"
    rows = data.read_text()
    try:  # a row of the CSV removed: the spec is unchanged, the data is not
        lines = rows.splitlines()
        data.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
        assert main(["eval", str(ckpt), "--tasks", "4"]) == 2
        assert "differ" in capsys.readouterr().err
    finally:
        data.write_text(rows)
    moved = run["root"] / "elsewhere" / "r"
    shutil.copytree(ckpt.parent.parent, moved)  # the run folder moved, the data where it was
    assert main(["eval", str(moved), "--tasks", "4"]) == 0
    capsys.readouterr()
