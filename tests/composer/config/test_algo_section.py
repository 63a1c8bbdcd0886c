"""Keys a learner never reads (``algo.inner_steps``/``algo.adapt`` for incontext, cnp, learned_opt):
refused when the user set them, only warned about in files that must keep loading."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from metacompose.config import ConfigError, load_config, to_yaml

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def test_a_run_folders_resolved_config_loads_again(tmp_path, caplog):
    # mathachieve_incontext inherits inner_steps: 3 from a base shared with MAML configs; the run
    # folder's config.yaml holds it resolved (no defaults:), and resume must read that file.
    cfg = load_config(CONFIGS / "mathachieve_incontext.yaml")
    saved = tmp_path / "config.yaml"
    saved.write_text(to_yaml(cfg))
    with caplog.at_level(logging.WARNING):
        again = load_config(saved)
    assert again.algo.inner_steps == cfg.algo.inner_steps == 3
    assert "algo.inner_steps=3" in caplog.text and "(ignored)" in caplog.text
    with pytest.raises(ConfigError, match=r"algo\.inner_steps=7: algo\.name=incontext"):
        load_config(saved, ["algo.inner_steps=7"])


def test_another_learner_on_a_maml_file_warns(caplog):
    with caplog.at_level(logging.WARNING):
        cfg = load_config(CONFIGS / "glyphs_20way1shot.yaml", ["algo.name=cnp"])
    assert cfg.algo.name == "cnp"
    assert "algo.inner_steps=5: algo.name=cnp" in caplog.text


def test_an_experiment_file_that_chose_the_learner_is_refused(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(f"defaults: [{CONFIGS / 'sinusoid_incontext.yaml'}]\nalgo:\n  inner_steps: 4\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml: algo\.inner_steps=4"):
        load_config(f)


def test_the_public_validate_checks_algo_args():
    from omegaconf import OmegaConf

    from metacompose.config import RunConfig, validate

    cfg = OmegaConf.structured(RunConfig)
    validate(cfg, "x.yaml")
    cfg.algo.name = "incontext"
    cfg.algo.args = {"layerz": 3}
    with pytest.raises(ConfigError, match=r"^x\.yaml: algo\.args\.layerz: unknown argument"):
        validate(cfg, "x.yaml")
    cfg.algo.args = {"layers": 100000}
    with pytest.raises(ConfigError, match=r"^x\.yaml: algo\.args\.layers=100000: must be <= 64"):
        validate(cfg, "x.yaml")
    cfg.algo.name, cfg.algo.args = "learned_opt", {"truncation": 20}
    with pytest.raises(ConfigError, match=r"algo\.args\.truncation=20: longer than"):
        validate(cfg, "x.yaml")
