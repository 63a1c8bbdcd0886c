"""The one-line account of a checkpoint's block restarts (``eval`` and ``inspect`` print it)."""

from __future__ import annotations

import torch

from metacompose.training.checkpoint_io import safe_load
from metacompose.training.restart_record import describe_restarts, record_in
from metacompose.training.resume import RESTART_RECORD

PLAN = {"order": "fg", "restarts": 4, "steps": 2000, "anneal": 1500, "within": 1.5,
        "fit_tasks": 256, "agree_tasks": 400, "seed": 3}  # fmt: skip


def phase(slot: str, kept: int) -> dict:
    return {"slot": slot, "fits": [0.1] * 5, "agreement": [0.5] * 5, "kept": kept}


def test_both_phases_done():
    record = {"plan": PLAN, "kept": 7, "phases": [phase("f", 4), phase("g", 0)]}
    assert describe_restarts(record) == (
        "block restarts on replica 7 (restart.seed 3, 4 restarts of 2000 steps a phase): "
        "phase 1 (f) kept restart 4, phase 2 (g) kept the incumbent"
    )


def test_a_polish_phase_says_whether_it_kept_the_polished_banks():
    record = {"plan": {**PLAN, "order": "fgp"}, "kept": 7,
              "phases": [phase("f", 0), phase("g", 2), phase("p", 1)]}  # fmt: skip
    record["plan"]["polish_steps"] = 600
    assert describe_restarts(record) == (
        "block restarts on replica 7 (restart.seed 3, 4 restarts of 2000 steps a phase, a polish "
        "of 600 steps): phase 1 (f) kept the incumbent, phase 2 (g) kept restart 2, "
        "phase 3 (p) kept the polished banks"
    )
    record["phases"][2] = phase("p", 0)
    assert describe_restarts(record).endswith("phase 3 (p) kept the incumbent")


def test_a_distil_phase_says_which_distilled_banks_it_kept():
    record = {"plan": {**PLAN, "order": "fgd"}, "kept": 7,
              "phases": [phase("f", 0), phase("g", 0), phase("d", 3)]}  # fmt: skip
    assert describe_restarts(record).endswith("phase 3 (d) kept distilled banks 3")
    record["phases"][2] = phase("d", 0)
    assert describe_restarts(record).endswith("phase 3 (d) kept the incumbent")


def test_a_run_stopped_between_phases_says_what_is_left():
    record = {"plan": {**PLAN, "order": "fgf"}, "kept": 0, "phases": [phase("f", 2)]}
    assert describe_restarts(record).endswith(
        "phase 1 (f) kept restart 2; 2 of the 3 planned (fgf) not run (train --resume runs them)"
    )
    none = describe_restarts({"plan": PLAN, "kept": 1, "phases": []})
    assert "no phase done; 2 of the 2 planned (fg) not run" in none


def test_a_damaged_record_still_gives_one_line():
    line = describe_restarts({"phases": [{"kept": 1}, "junk"]})
    assert line == (
        "block restarts on replica ? (restart.seed ?, ? restarts of ? steps a phase): "
        "phase 1 (?) kept restart 1"
    )


def test_read_from_a_checkpoint(tmp_path):
    record = {"plan": PLAN, "kept": 2, "phases": [phase("g", 1)]}
    torch.save({"state_dict": {}, RESTART_RECORD: record}, tmp_path / "a.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "b.ckpt")
    torch.save({"state_dict": {}, RESTART_RECORD: "not a record"}, tmp_path / "c.ckpt")
    assert record_in(safe_load(tmp_path / "a.ckpt")) == record
    assert record_in(safe_load(tmp_path / "b.ckpt")) is None
    assert record_in(safe_load(tmp_path / "c.ckpt")) is None
