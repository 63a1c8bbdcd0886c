"""Atomic checkpoint writes and refusal of corrupt, truncated or hostile checkpoints."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest
import torch
from training_testing import CONFIG, run_python, tiny_overrides

from metacompose.cli.main import main as cli
from metacompose.training import CheckpointError, atomic_save, safe_load, train

KILL_DURING_SAVE = textwrap.dedent(
    """
    import io, os, signal, sys
    import torch
    from metacompose.training import atomic_save

    real_save = torch.save

    def save_then_die(obj, f):  # write half the bytes of the new checkpoint, then get SIGKILLed
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = save_then_die
    atomic_save({"step": 2, "w": torch.full((1000,), 2.0)}, sys.argv[1])
    """
)


class Payload:
    """Unpickling this runs ``os.makedirs(marker)``: the evidence that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def write_hostile(path: Path, marker: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(2)}, "evil": Payload(marker)}, path)


def test_kill_during_save_leaves_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_save({"step": 1, "w": torch.full((1000,), 1.0)}, path)
    result = run_python(["-c", KILL_DURING_SAVE, str(path)])
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    leftovers = [p for p in tmp_path.iterdir() if p.name != "last.ckpt"]
    assert leftovers and all(p.name.endswith(".tmp") for p in leftovers)  # the torn write
    state = safe_load(path)  # the old checkpoint, whole
    assert state["step"] == 1
    torch.testing.assert_close(state["w"], torch.full((1000,), 1.0), atol=0, rtol=0)


def test_atomic_save_replaces_whole_file(tmp_path):
    path = tmp_path / "ckpt" / "last.ckpt"
    atomic_save({"step": 1}, path)
    atomic_save({"step": 2, "t": torch.arange(3)}, path)
    assert safe_load(path)["step"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_hostile_pickle_is_refused_and_never_runs(tmp_path):
    path, marker = tmp_path / "evil.ckpt", tmp_path / "pwned"
    write_hostile(path, marker)
    # Positive control, in another process: an unsafe load really would run the payload.
    control = run_python(["-c", f"import torch; torch.load({str(path)!r}, weights_only=False)"])
    assert control.returncode == 0, control.stderr[-2000:]
    assert marker.is_dir()
    marker.rmdir()

    with pytest.raises(CheckpointError, match="refused to load") as info:
        safe_load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert not marker.exists()


def test_hostile_checkpoint_refused_by_resume_and_cli(tmp_path, tiny_cfg, capsys):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    write_hostile(ckpt, marker)
    with pytest.raises(CheckpointError, match="refused to load"):
        train(tiny_cfg("evil", "trainer.max_steps=2"), resume=tmp_path / "evil")
    assert cli(["eval", str(ckpt), "--tasks", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("metacompose eval: error:") and "\n" not in err
    overrides = tiny_overrides(tmp_path, "evil", "trainer.max_steps=2")
    assert cli(["train", str(CONFIG), *overrides, "--resume", str(tmp_path / "evil")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("metacompose train: error:") and "refused to load" in err
    assert not marker.exists()
    assert not (tmp_path / "evil" / "metrics.csv").exists()  # nothing ran


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoints_are_refused(tmp_path, damage):
    path = tmp_path / "last.ckpt"
    atomic_save({"state_dict": {"w": torch.randn(500)}}, path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    else:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        safe_load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_weights_only_checkpoint_cannot_resume(tmp_path, tiny_cfg):
    run = train(tiny_cfg("w", "trainer.max_steps=2"))
    state = safe_load(run.checkpoint)
    slim = {k: state[k] for k in ("state_dict", "metacompose")}
    atomic_save(slim, run.checkpoint)
    with pytest.raises(CheckpointError, match="weights only"):
        train(tiny_cfg("w", "trainer.max_steps=4"), resume=run.run_dir)


def test_resume_never_writes_into_a_folder_the_checkpoint_did_not_come_from(tmp_path, tiny_cfg):
    """A checkpoint copied into another run's folder, or lying loose in any folder, is refused
    before anything is written: the other run's checkpoint and log stay as they were, and the loose
    folder does not become a run folder."""
    mine = train(tiny_cfg("mine", "trainer.max_steps=2"))
    other = train(tiny_cfg("other", "trainer.max_steps=2", "seed=7"))
    before = {p: p.read_bytes() for p in (other.checkpoint, other.run_dir / "metrics.csv")}
    copied = other.run_dir / "checkpoints" / "mine.ckpt"
    copied.write_bytes(mine.checkpoint.read_bytes())
    with pytest.raises(CheckpointError, match="holds another run") as info:
        train(tiny_cfg("mine", "trainer.max_steps=4"), resume=copied)
    assert "seed" in str(info.value) and "\n" not in str(info.value)
    assert {p: p.read_bytes() for p in before} == before
    loose = tmp_path / "shared" / "x.ckpt"
    loose.parent.mkdir()
    loose.write_bytes(mine.checkpoint.read_bytes())
    with pytest.raises(CheckpointError, match="not a checkpoint of a run folder"):
        train(tiny_cfg("mine", "trainer.max_steps=4"), resume=loose)
    assert sorted(p.name for p in loose.parent.iterdir()) == ["x.ckpt"]
    # a damaged config.yaml beside the checkpoint: named, nothing written
    own_yaml = mine.run_dir / "config.yaml"
    saved = own_yaml.read_text()
    own_yaml.write_text("")
    with pytest.raises(CheckpointError, match="damaged run config"):
        train(tiny_cfg("mine", "trainer.max_steps=4"), resume=mine.run_dir)
    own_yaml.write_text(saved)
    # its own folder, or its own checkpoint file, resumes
    assert train(tiny_cfg("mine", "trainer.max_steps=3"), resume=mine.checkpoint).run_dir == (
        mine.run_dir
    )


def test_an_empty_or_truncated_checkpoint_says_so(tmp_path):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        safe_load(path)
    atomic_save({"state_dict": {"w": torch.randn(500)}}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="truncated or not a torch checkpoint"):
        safe_load(path)
