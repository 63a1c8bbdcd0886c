"""Routing schedules follow the trainer's meta-iteration: with ``data.task_chunk_size`` (gradient
accumulation, one ``meta_step`` per chunk) the temperature anneals at the pace of an unchunked run."""

from pathlib import Path

import pytest

from metacompose.config import load_config
from metacompose.router.policies import RelaxedRouting
from metacompose.training.run import train

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "compositional.yaml"
DECIDE = RelaxedRouting.decide


def temperatures(tmp_path, monkeypatch, name, *extra):
    """``(meta-iteration, temperature)`` of every routed meta-step of a 3-iteration run."""
    seen = []

    def record(self, problem):
        seen.append((problem.step, self.schedule(problem.step)))
        return DECIDE(self, problem)

    monkeypatch.setattr(RelaxedRouting, "decide", record)
    cfg = load_config(CONFIG, [
        "trainer.max_steps=3", "data.meta_batch_size=4", "data.val_tasks=4",
        "trainer.val_check_interval=100", "trainer.enable_progress_bar=false",
        "router.tau_steps=2", f"out_dir={tmp_path}", f"name={name}", *extra,
        "trainer.steps_per_call=1",  # no timing probe: its meta-steps on a copy would be recorded
    ])  # fmt: skip
    train(cfg)
    return seen


def test_chunked_routed_run_anneals_at_the_pace_of_an_unchunked_one(tmp_path, monkeypatch):
    whole = temperatures(tmp_path, monkeypatch, "whole")
    chunked = temperatures(tmp_path, monkeypatch, "chunked", "data.task_chunk_size=2")
    assert [s for s, _ in whole] == [0, 1, 2]
    assert [s for s, _ in chunked] == [0, 0, 1, 1, 2, 2]  # two chunks per meta-iteration
    assert chunked[::2] == whole and chunked[1::2] == whole
    assert whole[0][1] == pytest.approx(1.0) and whole[2][1] == pytest.approx(0.3)
