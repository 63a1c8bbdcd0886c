"""Loading checkpoints, evaluating and reporting never import Lightning (they start fast)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    ["metacompose.evaluate", "metacompose.training.checkpoint_io", "metacompose.cli.eval_cmd"],
)
def test_module_loads_without_lightning(module):
    code = f"import sys, {module}; sys.exit('lightning' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, module


def test_training_names_resolve_on_first_use():
    import metacompose.training as training

    assert set(training.__all__) <= set(dir(training))
    assert training.train.__module__ == "metacompose.training.run"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        training.nope  # noqa: B018
