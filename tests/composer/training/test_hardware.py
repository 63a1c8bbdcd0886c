"""Impossible hardware requests fail with one line before any training work."""

from __future__ import annotations

import pytest
import torch
from training_testing import CONFIG, tiny_overrides

from metacompose.cli.main import main as cli
from metacompose.config import ConfigError, load_config
from metacompose.training import check_accelerator

NO_GPU = not torch.cuda.is_available()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            ["trainer.accelerator=gpu"],
            "no CUDA GPU",
            marks=pytest.mark.skipif(not NO_GPU, reason="needs a machine without GPU"),
        ),
        (["trainer.devices=[0,1]", "trainer.accelerator=cpu"], "device ids need a GPU"),
        (["trainer.precision=16-mixed"], "fp16 is GPU-only"),
        (["trainer.num_nodes=2", "name=null"], "set name="),
        (["trainer.devices=3", "trainer.strategy=ddp"], "divisible by the 3"),
        (["data.task_chunk_size=3"], "task_chunk_size=3"),
    ],
)
def test_bad_hardware_requests(tiny_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        check_accelerator(tiny_cfg("hw", *overrides))
    assert "\n" not in str(info.value)


def test_cli_gpu_request_fails_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = cli(["train", str(CONFIG), *tiny_overrides(tmp_path, "gpu"), "trainer.accelerator=gpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "trainer.accelerator=gpu" in err
    assert not (tmp_path / "gpu").exists()  # nothing was created or trained


def test_lightning_rejections_become_one_line_config_errors(tiny_cfg):
    from metacompose.training import train

    cfg = tiny_cfg("bad")
    cfg.trainer.strategy = "no_such_strategy"  # past load_config's own check: Lightning refuses
    with pytest.raises(ConfigError, match=r"^trainer: ") as info:
        train(cfg)
    assert "\n" not in str(info.value)


def test_missing_tensorboard_is_a_config_error(tiny_cfg, monkeypatch):
    import importlib.util

    from metacompose.training.loggers import make_logger

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="tensorboard package is not installed"):
        make_logger("tensorboard", "unused")
    with pytest.raises(ConfigError, match=r"trainer\.logger='wandb'"):
        make_logger("wandb", "unused")


@pytest.mark.parametrize("name", ["sinusoid_ddp.yaml", "sinusoid_multinode.yaml"])
def test_distributed_example_configs_split_evenly(name):
    from metacompose.training.hardware import check_layout, world_size

    cfg = load_config(CONFIG.parent / name)
    check_layout(cfg)
    assert cfg.trainer.strategy == "ddp" and cfg.data.sharding == "global"
    assert world_size(cfg) == cfg.trainer.devices * cfg.trainer.num_nodes
