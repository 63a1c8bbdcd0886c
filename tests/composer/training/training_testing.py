"""Helpers for the training tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metacompose.config import load_config

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "configs" / "sinusoid.yaml"

# Small and quick: 8 tasks per meta-batch, frequent checkpoints and validation.
TINY = [
    "data.meta_batch_size=8",
    "data.val_tasks=8",
    "trainer.val_check_interval=3",
    "trainer.log_every_n_steps=2",
    "trainer.checkpoint_every_n_steps=3",
    "trainer.enable_progress_bar=false",
    "trainer.deterministic=true",
    "model.args.hidden=[16,16]",
]


def tiny_overrides(out_dir: Path, name: str, *extra: str) -> list[str]:
    return [*TINY, f"out_dir={out_dir}", f"name={name}", *extra]


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(name: str, *extra: str):
        return load_config(CONFIG, tiny_overrides(tmp_path, name, *extra))

    return make


def run_python(args: list[str], *, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` from the repo root with one thread per process; output captured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def final_state(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
