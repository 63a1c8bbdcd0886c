"""Impossible hardware requests fail with one line before any training work."""

from __future__ import annotations

import os

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
        (["trainer.devices=-1"], r"trainer\.devices=-1: all devices means all GPUs"),  # TypeError
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


def test_memory_budget_chooses_the_largest_dividing_chunk_that_fits():
    from metacompose.training.hardware import auto_task_chunk

    assert auto_task_chunk(32, task_mb=60.0, budget_mb=256.0) == 4  # 4 x 60 fits, 8 x 60 does not
    assert auto_task_chunk(30, task_mb=60.0, budget_mb=256.0) == 3  # 4 does not divide 30
    assert auto_task_chunk(32, task_mb=1000.0, budget_mb=256.0) == 1  # one task at least
    assert auto_task_chunk(25, task_mb=0.01, budget_mb=256.0) == 25  # the whole share


def test_task_memory_estimate_counts_saved_activations_per_example():
    from metacompose.models import conv_graph, mlp_graph
    from metacompose.training.hardware import estimate_task_mb

    graph = conv_graph(filters=8, depth=1, image_size=8)
    x = torch.randn(4, 1, 8, 8)
    one = estimate_task_mb(graph, x, support=1, query=1, steps=1, second_order=False)
    # conv output (8x8x8 floats) saved by batch norm, its output by max-pool, pool indices (int64)
    # and the pooled map (by ReLU), the flat features (by the head). Which of them autograd keeps
    # as separate buffers depends on the layout (NCHW below 16 images, channels-last above), so
    # the estimate must land within a factor of two of this count.
    floats = 8 * 64 + 8 * 64 + 2 * 8 * 16 + 8 * 16 + 8 * 16
    assert 0.5 * floats * 4 / 2**20 <= one <= 2 * floats * 4 / 2**20
    so = estimate_task_mb(graph, x, support=2, query=3, steps=2, second_order=True)
    assert so == pytest.approx(one * (3 + 3 * 2 * 2))
    assert estimate_task_mb(mlp_graph(), torch.randn(4, 1), support=10, query=10, steps=1,
                            second_order=True) < 0.1  # fmt: skip


def test_chunks_per_rank_follows_the_budget_unless_a_chunk_size_is_set(tiny_cfg):
    from metacompose.training.hardware import chunks_per_rank

    cfg = tiny_cfg("hw", "data.meta_batch_size=8", "data.memory_budget_mb=100")
    assert chunks_per_rank(cfg, 1) == 1  # no estimate: one chunk
    assert chunks_per_rank(cfg, 1, task_mb=30.0) == 4  # chunks of 2 tasks (60 MB)
    assert chunks_per_rank(cfg, 2, task_mb=30.0) == 2
    cfg = tiny_cfg("hw", "data.meta_batch_size=8", "data.task_chunk_size=4")
    assert chunks_per_rank(cfg, 1, task_mb=1000.0) == 2


# what Lightning's cluster environments read (lightning.fabric.plugins.environments)
LAUNCHER_VARS = (
    "SLURM_NTASKS", "SLURM_JOB_NAME", "TORCHELASTIC_RUN_ID", "LSB_JOBID", "LSB_DJOB_RANKFILE",
    "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_SIZE", "MASTER_ADDR", "NODE_RANK", "WORLD_SIZE",
    "GROUP_RANK",
)  # fmt: skip


@pytest.fixture
def no_launcher(monkeypatch):
    for var in LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_several_nodes_without_a_launcher_are_refused_not_awaited(no_launcher, tmp_path, capsys):
    from metacompose.training.hardware import multi_node_launcher

    assert multi_node_launcher() is None
    code = cli(["train", str(CONFIG), *tiny_overrides(tmp_path, "nodes"), "trainer.num_nodes=2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert "trainer.num_nodes=2: no multi-node launcher found" in err
    assert not (tmp_path / "nodes").exists()


@pytest.mark.parametrize(
    ("env", "found"),
    [
        ({"SLURM_NTASKS": "8"}, "SLURMEnvironment"),
        ({"TORCHELASTIC_RUN_ID": "1"}, "TorchElasticEnvironment"),
        ({"MASTER_ADDR": "10.0.0.1", "NODE_RANK": "1"}, "LightningEnvironment"),
        ({"MASTER_ADDR": "10.0.0.1", "GROUP_RANK": "1"}, "LightningEnvironment"),
        ({"MASTER_ADDR": "10.0.0.1"}, None),  # which node is this one?
        ({"MASTER_ADDR": "10.0.0.1", "WORLD_SIZE": "4"}, None),  # every node would be node 0
        ({"SLURM_NTASKS": "8", "SLURM_JOB_NAME": "bash"}, None),  # interactive: Lightning's rule
    ],
)
def test_multi_node_launchers_are_lightnings(no_launcher, env, found):
    from metacompose.training.hardware import multi_node_launcher

    for var, value in env.items():
        no_launcher.setenv(var, value)
    assert multi_node_launcher() == found


def test_a_budget_below_one_task_warns_and_takes_one_task_per_chunk(tiny_cfg, caplog):
    from metacompose.training.hardware import chunks_per_rank

    cfg = tiny_cfg("hw", "data.meta_batch_size=8", "data.memory_budget_mb=1e-9")
    with caplog.at_level("WARNING"):
        assert chunks_per_rank(cfg, 1, task_mb=0.5) == 8  # as close to the budget as it gets
    assert "data.memory_budget_mb=1e-09: below one task's estimated 0.5 MB" in caplog.text
    assert chunks_per_rank(cfg, 1) == 1  # no estimate (not the MAML family): nothing to refuse
    cfg = tiny_cfg("hw", "data.meta_batch_size=8", "data.memory_budget_mb=0.5")
    assert chunks_per_rank(cfg, 1, task_mb=0.5) == 8  # one task per chunk, as asked
    cfg = tiny_cfg("hw", "data.meta_batch_size=8")  # the default budget is never refused
    assert chunks_per_rank(cfg, 1, task_mb=1000.0) == 8


def test_srun_on_the_path_neither_warns_nor_hides_torchrun(no_launcher, tmp_path):
    # a SLURM login node: ``srun`` exists but this process was not started by it
    from metacompose.training.hardware import multi_node_launcher

    srun = tmp_path / "srun"
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    no_launcher.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert multi_node_launcher() is None  # warnings are errors under this suite's pytest config
    no_launcher.setenv("TORCHELASTIC_RUN_ID", "1")
    assert multi_node_launcher() == "TorchElasticEnvironment"
