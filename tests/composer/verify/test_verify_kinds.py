"""`metacompose verify CKPT` without --spec uses the run config's verify.spec, and a shipped
classifier config (glyphs, run on digits: no fonts here) verifies with exit 0, 1 or 3, never 2."""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from metacompose.cli.main import main
from metacompose.config import load_config

ROOT = Path(__file__).resolve().parents[3]


def test_verify_without_spec_uses_the_run_config(tiny_checkpoint, tmp_path):
    rep = tmp_path / "v.json"
    code = main(
        ["verify", str(tiny_checkpoint), "--tasks", "1", "--tier", "fast", "--json", str(rep)]
    )
    assert code in (0, 1, 3)
    assert json.loads(rep.read_text())["spec"].endswith("configs/bounds/sinusoid.yaml")


@pytest.mark.slow
def test_digits_classifier_verifies_never_exit_2(tmp_path):
    cfg = load_config(ROOT / "configs" / "glyphs_5way1shot.yaml")
    cfg.task.family, cfg.task.args = "digits", {"ways": 5, "size": 8}
    cfg.model.args.image_size, cfg.model.args.depth, cfg.model.args.filters = 8, 2, 4
    cfg.report.ood_family = None
    path = tmp_path / "digits.yaml"
    OmegaConf.save(cfg, path)
    tiny = ["trainer.max_steps=2", "trainer.val_check_interval=2", "data.val_tasks=2"]
    tiny += ["trainer.checkpoint_every_n_steps=2", "data.meta_batch_size=2"]
    assert main(["train", str(path), *tiny, f"out_dir={tmp_path}", "name=d"]) == 0
    rep = tmp_path / "v.json"
    ckpt = tmp_path / "d" / "checkpoints" / "last.ckpt"
    code = main(["verify", str(ckpt), "--tasks", "1", "--tier", "fast", "--json", str(rep)])
    assert code in (0, 1, 3)
    claims = json.loads(rep.read_text())["tasks"][0]["claims"]
    assert any(c["claim"].startswith("prediction_stable") for c in claims)
    proved = [c for c in claims if c["status"] == "proved"]
    assert proved and all(any("batch norm" in f for f in c["facts"]) for c in proved)
