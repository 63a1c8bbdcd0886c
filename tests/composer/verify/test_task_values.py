"""How ``verify --json`` writes each task's ``info``: factor names as ``inspect`` shows them."""

from __future__ import annotations

import torch

from metacompose.verify.report import task_value


def test_factor_indices_become_names_and_other_values_keep_their_type():
    names = ("ramp", "vee", "saw")
    assert task_value(torch.tensor(2), names) == "saw"
    assert task_value(torch.tensor(2), None) == 2 and isinstance(
        task_value(torch.tensor(2), None), int
    )
    assert (
        task_value(torch.tensor(5), names) == 5
    )  # outside the names (e.g. "identity" extra): as is
    assert task_value(torch.tensor(0.25), names) == 0.25
    assert task_value(torch.tensor(True), None) is True
