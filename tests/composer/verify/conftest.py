"""A tiny trained sinusoid checkpoint shared by the verify tests (30 meta-iterations, 1-16-16-1)."""

from pathlib import Path

import pytest

from metacompose.cli.main import main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verify_runs")
    args = [
        "train",
        str(ROOT / "configs" / "sinusoid.yaml"),
        "trainer.max_steps=30",
        "trainer.val_check_interval=30",
        "trainer.checkpoint_every_n_steps=30",
        "trainer.enable_progress_bar=false",
        "data.val_tasks=8",
        "model.args.hidden=[16,16]",
        f"out_dir={out}",
        "name=tiny",
    ]
    assert main(args) == 0
    return out / "tiny" / "checkpoints" / "last.ckpt"
