"""Progress bars of the long commands: on stderr only, stdout unchanged, off in logs and pipes;
and evaluating in chunks leaves every task's numbers as they were."""

import os
import re
import sys
from pathlib import Path

import pytest
import torch

from metacompose.cli.main import main
from metacompose.config import load_config
from metacompose.evaluate import evaluate, evaluate_tasks, load_checkpoint
from metacompose.progress import ENV, track
from metacompose.tasks.base import derive_seed

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "trainer.max_steps=3",
    "data.val_tasks=8",
    "trainer.enable_progress_bar=false",
    "model.args.hidden=[8]",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    from metacompose.training import train

    out = tmp_path_factory.mktemp("progress_runs")
    cfg = load_config(ROOT / "configs" / "sinusoid.yaml", [*TINY, f"out_dir={out}", "name=tiny"])
    return str(train(cfg, config_name="tiny").checkpoint)


def run_cli(args: list[str], capsys, monkeypatch, *, flag: str | None) -> tuple[str, str]:
    """``metacompose ARGS`` with ``METACOMPOSE_PROGRESS`` set to ``flag`` (unset: ``None``)."""
    if flag is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, flag)
    capsys.readouterr()
    assert main(args) == 0
    return capsys.readouterr()


def test_eval_bar_on_stderr_and_stdout_unchanged(checkpoint, capsys, monkeypatch):
    args = ["eval", checkpoint, "--tasks", "30", "--steps", "2"]
    plain = run_cli(args, capsys, monkeypatch, flag="0")
    shown = run_cli(args, capsys, monkeypatch, flag="1")
    assert shown.out == plain.out and "query mse" in shown.out
    assert "eval sinusoid" in shown.err and "/30 " in shown.err and "task" in shown.err
    assert plain.err == ""


def test_no_bar_without_a_terminal(checkpoint, capsys, monkeypatch):
    """Unset, the bar follows stderr; pytest's captured stderr is not a TTY."""
    out, err = run_cli(
        ["eval", checkpoint, "--tasks", "12", "--steps", "1"], capsys, monkeypatch, flag=None
    )
    assert "query mse" in out
    assert err == ""


def test_inspect_bar_on_stderr(checkpoint, tmp_path, capsys, monkeypatch):
    args = ["inspect", checkpoint, "--tasks", "4"]  # a plain learner: one graph
    plain = run_cli([*args, "--out", str(tmp_path / "a")], capsys, monkeypatch, flag="0")
    shown = run_cli([*args, "--out", str(tmp_path / "b")], capsys, monkeypatch, flag="1")
    assert shown.out.replace(str(tmp_path / "b"), "OUT") == plain.out.replace(
        str(tmp_path / "a"), "OUT"
    )
    assert "inspect: write graphs" in shown.err and "graph/s" in shown.err
    assert plain.err == ""


def _no_seconds(text: str) -> str:
    return re.sub(r"\d+\.\d+ ?s\b", "T s", text)


def test_verify_bar_on_stderr(checkpoint, capsys, monkeypatch):
    spec = str(ROOT / "configs" / "bounds" / "sinusoid.yaml")
    args = ["verify", checkpoint, "--spec", spec, "--tasks", "2", "--tier", "fast"]
    monkeypatch.setenv(ENV, "0")
    capsys.readouterr()
    code = main(args)
    plain = capsys.readouterr()
    monkeypatch.setenv(ENV, "1")
    assert main(args) == code
    shown = capsys.readouterr()
    assert _no_seconds(shown.out) == _no_seconds(plain.out) and "tier fast" in shown.out
    assert "verify (fast)" in shown.err and "/2 " in shown.err
    assert plain.err == ""


def test_self_test_bar_on_stderr(capsys, monkeypatch):
    args = ["verify", "--self-test", "--networks", "2"]
    plain = run_cli(args, capsys, monkeypatch, flag="0")
    shown = run_cli(args, capsys, monkeypatch, flag="1")
    assert _no_seconds(shown.out) == _no_seconds(plain.out) and "PASS" in shown.out
    # 2 dense networks and max(1, 2 // 4) = 1 conv network
    assert "verify --self-test" in shown.err and "/3 " in shown.err
    assert plain.err == ""


def reference_curves(learner, family, *, n_tasks, steps, seed, batch_size):
    """``evaluate``'s per-task curves as computed before the progress bar: ``(S + 1, N)``."""
    g = torch.Generator().manual_seed(derive_seed(seed, "test", "eval"))
    curves, done = [], 0
    while done < n_tasks:
        b = min(batch_size, n_tasks - done)
        batch = family.sample(b, shots=10, query=10, generator=g, split="test")
        curves.append(learner.evaluate(batch, steps=steps))
        done += b
    return torch.cat(curves, dim=1)


def test_chunked_evaluation_gives_the_same_numbers(checkpoint):
    learner, _, family = load_checkpoint(checkpoint)
    kw = {"n_tasks": 23, "steps": 3, "shots": 10, "query": 10, "seed": 5, "batch_size": 10}
    whole = evaluate_tasks(learner, family, **kw)
    ref = reference_curves(learner, family, n_tasks=23, steps=3, seed=5, batch_size=10)
    assert whole.shape == (4, 23)
    assert torch.equal(whole, ref)  # the task stream and each task's numbers are today's
    for chunk in (2, 4, 7):
        assert torch.equal(evaluate_tasks(learner, family, **kw, chunk=chunk), whole)
    result = evaluate(learner, family, **kw)
    torch.testing.assert_close(
        torch.tensor(result.mean, dtype=torch.float64), whole.double().mean(1), rtol=0.0, atol=0.0
    )


def test_routed_inspection_bar_over_the_tasks(capsys, monkeypatch):
    from metacompose.build import build_family, build_learner
    from metacompose.router.inspection import inspect_routed, sample_tasks

    cfg = load_config(ROOT / "configs" / "compositional.yaml")
    family = build_family(cfg.task)
    learner = build_learner(cfg, family).eval()
    batch = sample_tasks(family, 3, shots=cfg.task.shots, query=cfg.task.query, seed=0)
    monkeypatch.setenv(ENV, "1")
    capsys.readouterr()
    shown = inspect_routed(learner, family, batch, steps=1)
    assert "inspect: export graphs" in capsys.readouterr().err
    monkeypatch.setenv(ENV, "0")
    plain = inspect_routed(learner, family, batch, steps=1)
    assert capsys.readouterr().err == ""
    assert [r.report for r in shown] == [r.report for r in plain]


@pytest.mark.parametrize("before", [None, "1"])
def test_bars_off_silences_a_block_and_restores_the_setting(monkeypatch, capsys, before):
    from metacompose.progress import bars_off, progress_enabled

    if before is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, before)
    with bars_off():
        assert not progress_enabled()
        list(track(range(3), desc="quiet"))
    with bars_off(False):
        assert progress_enabled() == (before == "1" or sys.stderr.isatty())
    assert os.environ.get(ENV) == before
    assert "quiet" not in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["command", "script"])
def test_a_reader_gone_ends_quietly_with_the_shell_status(checkpoint, tmp_path, kind):
    """``metacompose eval ... | head -1`` (and a script's): exit 141, no traceback."""
    import json
    import subprocess

    if kind == "command":
        argv = ["-m", "metacompose.cli.main", "eval", checkpoint, "--tasks", "4", "--steps", "1"]
    else:
        rows = [{"setting": f"f K={k}", "family": "f", "shots": k, "seed": 0, "method": m,
                 "metric": "mse", "mean": 1.0, "ci95": 0.1, "n_tasks": 2, "steps": 1, "lr": None,
                 "train_iterations": 1, "train_seconds": 1.0, "eval_seconds": 0.1,
                 "values": [0.9, 1.1]} for k in range(1, 200) for m in ("scratch", "maml")]  # fmt: skip
        (tmp_path / "r.json").write_text(json.dumps(rows))
        argv = [str(ROOT / "scripts" / "bench_real.py"), "--merge", str(tmp_path / "r.json")]
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, text=True)  # fmt: skip
    proc.stdout.close()  # the reader is gone before the first line
    with proc.stderr:
        err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141, err[-2000:]
    assert "Traceback" not in err and "BrokenPipe" not in err, err[-2000:]


def test_a_broken_pipe_that_is_not_stdout_is_a_real_error(checkpoint, monkeypatch):
    """A command writing to a closed socket or pipe of its own: raised, not a quiet 141."""
    from metacompose.cli import eval_cmd

    def closed_socket(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(eval_cmd, "run", closed_socket)
    with pytest.raises(BrokenPipeError):
        main(["eval", checkpoint])
