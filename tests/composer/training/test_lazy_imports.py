"""Loading checkpoints, evaluating, reporting, the baselines and the restart stage never import
Lightning (they, and the scripts built on them, start fast: a bad flag fails in about 2 s, not 5)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "metacompose.evaluate",
        "metacompose.training.checkpoint_io",
        "metacompose.cli.eval_cmd",
        "metacompose.baselines.compare",
        "metacompose.training.guard",
        "metacompose.training.restart_stage",
    ],
)
def test_module_loads_without_lightning(module):
    code = f"import sys, {module}; sys.exit('lightning' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, module


def test_training_names_resolve_on_first_use():
    import metacompose.training as training

    assert set(training.__all__) <= set(dir(training))
    assert training.train.__module__ == "metacompose.training.run"
    assert training.TrainingInterrupted.__module__ == "metacompose.training.interrupted"
    assert training.select_tasks.__module__ == "metacompose.training.data"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        training.nope  # noqa: B018
