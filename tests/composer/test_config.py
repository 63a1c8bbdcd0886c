"""Every shipped config binds to its schema and to its builders' signatures without building anything."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from composer.build import MODEL_BUILDERS
from composer.config import ConfigError, check_kwargs, load_config
from composer.tasks import FAMILIES

ROOT = Path(__file__).resolve().parents[2]
RUN_CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert any(p.name == "sinusoid.yaml" for p in RUN_CONFIGS)


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path):
    cfg = load_config(path)
    assert cfg.task.family in FAMILIES, f"{path.name}: task.family"
    check_kwargs(FAMILIES[cfg.task.family], OmegaConf.to_container(cfg.task.args), "task.args")
    if cfg.model.builder in MODEL_BUILDERS:
        check_kwargs(
            MODEL_BUILDERS[cfg.model.builder], OmegaConf.to_container(cfg.model.args), "model.args"
        )


def test_sinusoid_defaults_are_the_maml_paper():
    cfg = load_config(ROOT / "configs" / "sinusoid.yaml")
    assert list(cfg.model.args.hidden) == [40, 40]
    assert cfg.algo.inner_lr == 0.01 and cfg.algo.inner_steps == 1
    assert cfg.data.meta_batch_size == 25 and cfg.optim.name == "adam" and cfg.optim.lr == 1e-3
    assert cfg.task.shots == 10


def write(tmp_path, text):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, match",
    [
        ("task:\n  shotz: 3\n", r"bad\.yaml: unknown key 'task\.shotz'"),
        ("task:\n  shots: many\n", r"bad\.yaml: key 'task\.shots'"),
        ("algo: [1, 2\n", r"bad\.yaml: not valid YAML"),
        ("- 1\n- 2\n", r"bad\.yaml: top level must be a mapping"),
    ],
)
def test_bad_config_is_one_line_error_naming_file_and_key(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match) as e:
        load_config(write(tmp_path, text))
    assert "\n" not in str(e.value)


def test_missing_file_and_bad_overrides():
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config("nope.yaml")
    path = ROOT / "configs" / "sinusoid.yaml"
    with pytest.raises(ConfigError, match=r"override algo\.nme: unknown key 'algo\.nme'"):
        load_config(path, ["algo.nme=maml"])
    with pytest.raises(ConfigError, match=r"trainer\.max_steps"):
        load_config(path, ["trainer.max_steps=lots"])
    cfg = load_config(path, ["trainer.max_steps=500", "algo.inner_steps=5"])
    assert cfg.trainer.max_steps == 500 and cfg.algo.inner_steps == 5


def test_builder_args_are_checked_against_signatures():
    with pytest.raises(ConfigError, match=r"model\.args\.hiden: unknown argument of mlp_graph"):
        check_kwargs(MODEL_BUILDERS["mlp"], {"hiden": [4]}, "model.args")
