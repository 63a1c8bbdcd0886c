"""Checkpoints written before an argument moved still rebuild: a compositional family's check
arguments (``min_distinct``, ``on_confusable``, ``check_points``), flat in ``task.args`` before,
now live in ``task.args.check``."""

from pathlib import Path

import torch

from metacompose.config import load_config
from metacompose.evaluate import load_checkpoint, move_check_keys
from metacompose.training import train

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sums.yaml"


def test_old_flat_check_arguments_move_into_check():
    old = {"task": {"args": {"structure": "sum", "min_distinct": 0.005, "check_points": 10}}}
    new = move_check_keys(old)
    assert new["task"]["args"] == {
        "structure": "sum",
        "check": {"min_distinct": 0.005, "points": 10},
    }
    assert move_check_keys(new) == new  # nothing left to move
    assert old["task"]["args"]["min_distinct"] == 0.005  # the input is not modified


def test_a_checkpoint_with_the_old_arguments_rebuilds(tmp_path):
    extra = ["trainer.max_steps=2", "trainer.val_check_interval=2", "data.val_tasks=4",
             "data.meta_batch_size=2", "trainer.enable_progress_bar=false"]  # fmt: skip
    run = train(load_config(CONFIG, [*extra, f"out_dir={tmp_path}", "name=sums"]))
    ckpt = torch.load(run.checkpoint, weights_only=True)
    args = ckpt["metacompose"]["config"]["task"]["args"]
    args["min_distinct"] = args.pop("check")["min_distinct"]  # as written before the move
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    _, cfg, family = load_checkpoint(old)
    assert cfg.task.args.check == {"min_distinct": 0.005}
    assert family.structure.name == "sum"
