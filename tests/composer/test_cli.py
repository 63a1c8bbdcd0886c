"""End to end through the CLI on a tiny config: train writes a run folder, eval reads it back."""

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metacompose.cli.main import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "sinusoid.yaml")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    args = [
        "train",
        CONFIG,
        "trainer.max_steps=30",
        "trainer.val_check_interval=15",
        "trainer.checkpoint_every_n_steps=10",
        "trainer.enable_progress_bar=false",
        "data.val_tasks=25",
        f"out_dir={out}",
        "name=tiny",
    ]
    assert main(args) == 0
    return out / "tiny"


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for name in COMMANDS:
        assert name in text


def test_train_writes_run_folder_and_prints_it_last(run_dir, capsys):
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "metrics.csv").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    header = (run_dir / "metrics.csv").read_text().splitlines()[0]
    assert "val/query_mse" in header
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 30
    assert ckpt["metacompose"]["config"]["trainer"]["max_steps"] == 30


def test_train_prints_run_dir_as_last_line(tmp_path, capsys):
    code = main(
        [
            "train",
            CONFIG,
            "trainer.max_steps=2",
            "trainer.enable_progress_bar=false",
            "data.val_tasks=25",
            f"out_dir={tmp_path}",
            "name=two",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "two")


def test_eval_reports_table_and_json(run_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    code = main(["eval", ckpt, "--tasks", "20", "--steps", "3", "--shots", "5", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert set(data) == {"task_family", "metric", "shots", "n_tasks", "steps", "mean", "ci95",
                         "seed", "query", "last_per_task", "tasks_digest"}  # fmt: skip
    assert data["task_family"] == "sinusoid" and data["metric"] == "mse"
    assert data["shots"] == 5 and data["n_tasks"] == 20 and data["steps"] == [0, 1, 2, 3]
    assert len(data["mean"]) == 4 and all(c >= 0 for c in data["ci95"])
    # the last step's per-task values, rounded to 6 digits, average to the reported mean
    assert len(data["last_per_task"]) == 20 and data["seed"] == 0
    assert sum(data["last_per_task"]) / 20 == pytest.approx(data["mean"][3], rel=1e-5)
    table = capsys.readouterr().out
    assert "query mse" in table and f"{data['mean'][3]:.4f}" in table


def test_eval_is_reproducible_for_a_seed(run_dir, tmp_path):
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    main(["eval", ckpt, "--tasks", "10", "--steps", "2", "--seed", "4", "--json", str(a)])
    main(["eval", ckpt, "--tasks", "10", "--steps", "2", "--seed", "4", "--json", str(b)])
    assert json.loads(a.read_text()) == json.loads(b.read_text())


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("kind", ["hostile", "truncated", "garbage", "missing"])
def test_bad_checkpoints_are_refused_with_one_line_and_nothing_runs(
    kind, run_dir, tmp_path, capsys
):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "bad.ckpt"
    if kind == "hostile":
        torch.save({"state_dict": {}, "evil": _Payload(str(marker))}, path)
    elif kind == "truncated":
        data = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(pickle.dumps("not a checkpoint") + b"\x00junk")
    code = main(["eval", str(path), "--tasks", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("metacompose eval: error:") and str(path) in err
    assert len(err.splitlines()) == 1
    assert not marker.exists()


def test_bad_config_exits_2_naming_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo:\n  nmae: maml\n")
    assert main(["train", str(bad)]) == 2
    assert "unknown key 'algo.nmae'" in capsys.readouterr().err


def test_gpu_request_without_gpu_fails_before_training(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code = main(["train", CONFIG, "trainer.accelerator=gpu", f"out_dir={tmp_path}"])
    assert code == 2
    assert "trainer.accelerator=gpu" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # failed before creating a run folder


def test_a_run_folder_stands_for_its_last_checkpoint(run_dir, tmp_path):
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    by_file, by_folder = tmp_path / "file.json", tmp_path / "folder.json"
    assert main(["eval", ckpt, "--tasks", "6", "--steps", "1", "--json", str(by_file)]) == 0
    assert (
        main(["eval", str(run_dir), "--tasks", "6", "--steps", "1", "--json", str(by_folder)]) == 0
    )
    assert json.loads(by_file.read_text()) == json.loads(by_folder.read_text())


def test_report_refuses_a_folder_and_its_checkpoint_as_two_runs(run_dir, tmp_path, capsys):
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    code = main(["report", str(run_dir), ckpt, "--out", str(tmp_path / "r"), "--tasks", "2"])
    assert code == 2 and "given twice" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_train_summary_prints_metrics_not_the_row_label(tmp_path, capsys):
    argv = ["train", CONFIG, "trainer.max_steps=3", "trainer.enable_progress_bar=false"]
    assert main([*argv, "data.val_tasks=5", f"out_dir={tmp_path}", "name=s"]) == 0
    out = capsys.readouterr().out
    assert "val/query_mse:" in out and "step:" not in out  # it printed "step: 2.0000"


def test_sigterm_during_eval_says_so_in_one_line_and_exits_143(run_dir, tmp_path):
    """SIGTERM outside training ended the process silently with 143; now it names itself."""
    env = {**os.environ, "METACOMPOSE_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "metacompose.cli.main", "eval", str(run_dir)]
    proc = subprocess.Popen(
        [*cmd, "--tasks", "1000000", "--steps", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    try:
        first = proc.stderr.read(1)  # the progress bar's first byte: run() is working
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    text = (first + err).decode()
    assert proc.returncode == 143, text
    assert text.rstrip().endswith("metacompose eval: terminated (SIGTERM)"), text
    assert "Traceback" not in err.decode()


def test_overrides_after_resume_are_overrides(tmp_path, capsys):
    """``--resume RUN key=value`` was refused as unrecognized arguments (argparse ends the
    overrides at the first option); it means the same as ``key=value --resume RUN``."""
    base = ["train", CONFIG, "trainer.enable_progress_bar=false", "data.val_tasks=5"]
    assert main([*base, "trainer.max_steps=2", f"out_dir={tmp_path}", "name=r"]) == 0
    run = tmp_path / "r"
    assert (
        main([*base, f"out_dir={tmp_path}", "name=r", "--resume", str(run), "trainer.max_steps=4"])
        == 0
    )
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    with pytest.raises(SystemExit) as stop:  # argparse's usage error
        main([*base, "--resume", str(run), "trainer.max_steps=6", "--bogus"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_resume_refuses_a_name_that_would_move_the_run(tmp_path, capsys):
    """``name=other --resume RUN`` was silently ignored (the run went on in RUN); the run's own
    name and out_dir, as the resume line after a stop repeats them, are accepted."""
    base = ["train", CONFIG, "trainer.enable_progress_bar=false", "data.val_tasks=5"]
    assert main([*base, "trainer.max_steps=2", f"out_dir={tmp_path}", "name=r"]) == 0
    run = tmp_path / "r"
    capsys.readouterr()
    moved = [*base, "name=other", "--resume", str(run), "trainer.max_steps=4"]
    assert main(moved) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "a resumed run continues in its own folder" in err
    assert not (tmp_path / "other").exists()
    assert (
        main([*base, f"out_dir={tmp_path / 'x'}", "--resume", str(run), "trainer.max_steps=4"]) == 2
    )
    own = [*base, f"out_dir={tmp_path}", "name=r", "--resume", str(run), "trainer.max_steps=3"]
    assert main(own) == 0
    assert "trained 1 meta-iteration (resumed at 2, now at 3)" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::metacompose.training.guard.BadTaskWarning")
def test_a_run_that_diverged_says_so_and_exits_1(tmp_path, capsys):
    """Step sizes of 100 drop nearly every task: the run finishes and is saved, but its validation
    metric is NaN; that ended with exit 0 and no word."""
    argv = ["train", CONFIG, "algo.inner_lr=100", "optim.lr=100", "trainer.max_steps=6"]
    argv += [
        "trainer.enable_progress_bar=false",
        "data.val_tasks=5",
        f"out_dir={tmp_path}",
        "name=d",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("metacompose train: val/") and "the model diverged; lower optim.lr" in err
    assert (tmp_path / "d" / "checkpoints" / "last.ckpt").is_file()
