"""A new run that fails before writing anything takes its run folder (and an out_dir it created)
with it; a folder with a metric, a checkpoint or anything else in it is kept."""

from __future__ import annotations

import pytest
from training_testing import CONFIG, tiny_overrides

from metacompose.config import load_config
from metacompose.training import train
from metacompose.training.module import MetaLearningModule
from metacompose.training.run_folder import remove_if_untouched
from metacompose.training.run_lock import LOCK_NAME


def test_a_run_failing_at_its_first_step_leaves_no_folder(tmp_path, monkeypatch):
    out = tmp_path / "runs"
    cfg = load_config(CONFIG, tiny_overrides(out, "x", "trainer.max_steps=3"))

    def broken(self, *args, **kwargs):
        raise RuntimeError("a bad value only the first meta-step reveals")

    monkeypatch.setattr(MetaLearningModule, "training_step", broken)
    with pytest.raises(RuntimeError, match="first meta-step"):
        train(cfg)
    assert not out.exists()


def test_an_existing_out_dir_stays(tmp_path, monkeypatch):
    out = tmp_path / "runs"
    (out / "other").mkdir(parents=True)
    cfg = load_config(CONFIG, tiny_overrides(out, "x", "trainer.max_steps=3"))
    monkeypatch.setattr(MetaLearningModule, "training_step", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        train(cfg)
    assert sorted(p.name for p in out.iterdir()) == ["other"]


def test_only_an_untouched_folder_is_removed(tmp_path):
    untouched = tmp_path / "a"
    untouched.mkdir()
    (untouched / "config.yaml").write_text("seed: 0\n")
    (untouched / LOCK_NAME).write_text("")
    assert remove_if_untouched(untouched) and not untouched.exists()
    for extra in ("metrics.csv", "checkpoints/last.ckpt", "notes.txt"):
        kept = tmp_path / "b"
        (kept / extra).parent.mkdir(parents=True, exist_ok=True)
        (kept / "config.yaml").write_text("seed: 0\n")
        (kept / extra).write_text("x")
        assert not remove_if_untouched(kept) and (kept / extra).exists()
        (kept / extra).unlink()
    assert not remove_if_untouched(tmp_path / "missing")


def test_a_new_run_in_a_finished_folder_is_one_line_before_lightning_starts(tmp_path):
    """The refusal comes before the trainer is built (no "GPU available" lines first), and the
    finished run is left as it was."""
    import subprocess
    import sys

    out = tmp_path / "runs"
    ckpt = out / "done" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"a finished run's checkpoint")
    argv = ["train", str(CONFIG), *tiny_overrides(out, "done", "trainer.max_steps=3")]
    code = "import sys; from metacompose.cli.main import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "name=done: run folder" in lines[0], done.stderr
    assert "already holds a checkpoint (continue it with --resume" in lines[0]
    assert ckpt.read_bytes() == b"a finished run's checkpoint"
    assert sorted(p.name for p in (out / "done").iterdir()) == ["checkpoints"]
