"""Every shipped config binds to its schema and to its builders' signatures without building anything."""

from pathlib import Path
from typing import get_args

import pytest
from omegaconf import OmegaConf

from metacompose.build import MODEL_BUILDERS
from metacompose.config import ConfigError, check_kwargs, load_config
from metacompose.tasks import FAMILIES

ROOT = Path(__file__).resolve().parents[2]
# configs/*.yaml are run configs; configs/base/ holds the partial configs they compose with
# ``defaults:`` (checked in tests/composer/config/test_compose.py), configs/{data,bounds,rules}
# the dataset, stability and rule specs.
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
        ("task:\n  shots: many\n", r"bad\.yaml: task\.shots=many: expected an integer"),
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


def test_choice_tables_match_their_owners():
    from lightning.pytorch.strategies import StrategyRegistry

    from metacompose.algorithms import ALGORITHMS
    from metacompose.algorithms.builders import ALGO_BUILDERS
    from metacompose.build import OPTIMIZERS
    from metacompose.config.validate import CHOICES, strategies
    from metacompose.router.build import EvalRouting, Routing
    from metacompose.symbolic import TIERS
    from metacompose.training.loggers import LOGGERS
    from metacompose.verify.enforce import EVERY, MODES

    assert CHOICES["algo.name"] == ALGORITHMS + tuple(ALGO_BUILDERS)
    assert set(CHOICES["optim.name"]) == set(OPTIMIZERS)
    assert CHOICES["trainer.logger"] == LOGGERS
    assert CHOICES["router.routing"] == get_args(Routing)
    assert CHOICES["router.eval_routing"] == get_args(EvalRouting)
    assert CHOICES["enforce.mode"] == MODES and CHOICES["enforce.every"] == EVERY
    assert set(CHOICES["enforce.tier"]) == set(TIERS)
    assert set(strategies()) == {"auto", *StrategyRegistry.available_strategies()}


@pytest.mark.parametrize(
    "override, match",
    [
        (
            "trainer.max_steps=0",
            r"sinusoid\.yaml: trainer\.max_steps=0: must be in 1\.\.100000000$",
        ),
        ("optim.lr=-0.001", r"optim\.lr=-0\.001: must be > 0$"),
        ("algo.inner_lr=nan", r"algo\.inner_lr=nan: must be finite$"),
        ("optim.name=adamx", r"optim\.name=adamx: expected one of adam, adamw, sgd$"),
        ("trainer.max_steps=${nope}", r"key 'trainer\.max_steps': Interpolation key 'nope'"),
        ("model.args.hidden=[a,b]", r"model\.args\.hidden=\[a, b\]: expected list\[int\]"),
        ("=5", r"override '=5': empty key"),
        (
            "optim.lr='1.5'",
            r"optim\.lr='1\.5': a quoted number is a string; write 1\.5 without quotes$",
        ),
        ("trainer.max_steps='30'", r"trainer\.max_steps='30': a quoted number is a string"),
        ("task.shots='017'", r"task\.shots='017': .* write 17 without quotes$"),  # not YAML's 15
        (
            "report.shots=['5',10]",
            r"report\.shots=\['5', 10\]: a quoted number is a string; write 5",
        ),
    ],
)
def test_bad_values_fail_on_load_naming_file_key_and_value(override, match):
    with pytest.raises(ConfigError, match=match) as e:
        load_config(ROOT / "configs" / "sinusoid.yaml", [override])
    assert "\n" not in str(e.value)


def test_limits_accept_the_edges():
    cfg = load_config(
        ROOT / "configs" / "sinusoid.yaml",
        ["trainer.max_steps=100000000", "algo.inner_steps=1", "algo.inner_lr=100", "seed=7",
         "optim.grad_clip=null", "trainer.cpu_threads=null", "trainer.devices=auto"],
    )  # fmt: skip
    assert cfg.trainer.max_steps == 10**8 and cfg.algo.inner_steps == 1
    # a gradient-based learner takes at least one inner step (its InnerLoop's rule, on load) and
    # so a zero step size is refused; a learner without an inner loop takes neither
    with pytest.raises(ConfigError, match=r"algo\.inner_steps=0: must be in 1\.\.10000"):
        load_config(ROOT / "configs" / "sinusoid.yaml", ["algo.inner_steps=0"])
    with pytest.raises(ConfigError, match=r"algo\.inner_lr=0\.0: must be > 0"):
        load_config(
            ROOT / "configs" / "sinusoid.yaml", ["algo.eval_inner_steps=0", "algo.inner_lr=0"]
        )


def test_bare_off_reads_as_off_and_interpolations_are_resolved_once(tmp_path):
    cfg = load_config(write(tmp_path, "enforce:\n  mode: off\ntrainer:\n  log_every_n_steps: 7\n"
                                      "  val_check_interval: ${trainer.log_every_n_steps}\n"))  # fmt: skip
    assert cfg.enforce.mode == "off"
    assert cfg.trainer.val_check_interval == 7


@pytest.mark.parametrize(
    "data, match",
    [
        (
            b"seed: 1\nseed: 2\n",
            r"bad\.yaml: not valid YAML: duplicate key 'seed' \(first at line 1\) \(line 2",
        ),
        (b"optim:\n  lr: 0.1\n  lr: 0.2\n", r"duplicate key 'lr'"),
        ("seed: 1\n".encode("utf-16"), r"bad\.yaml: not a UTF-8 text file"),
        (b"\x89PNG\r\n\x1a\n\x00", r"bad\.yaml: not a UTF-8 text file"),
        (b"seed: !!python/object/apply:os.system [echo]\n", r"could not determine a constructor"),
    ],
)
def test_yaml_files_are_read_strictly(tmp_path, data, match):
    path = tmp_path / "bad.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_value_type_checks_follow_annotations():
    from metacompose.config.arg_types import check_value

    assert check_value([8, 8], list[int] | tuple[int, ...])
    assert not check_value(["a"], list[int] | tuple[int, ...])
    assert check_value([1, 2.5], tuple[float, float]) and not check_value([1], tuple[float, float])
    assert check_value(None, str | None) and not check_value(True, int)
    assert check_value(3, float) and not check_value("3", float)


def test_a_quoted_number_in_a_file_or_a_base_is_refused_other_strings_as_before(tmp_path):
    """A quoted number in a number key is a string as written (omegaconf alone would convert
    it); a word is refused by the schema as before, an interpolation and ``1e-3`` (a string to
    PyYAML, a number to omegaconf) are read as before."""
    base = ROOT / "configs" / "sinusoid.yaml"
    with pytest.raises(ConfigError, match=r"optim\.lr='0\.001': a quoted number is a string"):
        load_config(write(tmp_path, f"defaults: [{base}]\noptim:\n  lr: '0.001'\n"))
    (tmp_path / "quoted_base.yaml").write_text(f"defaults: [{base}]\ntask:\n  shots: '7'\n")
    with pytest.raises(ConfigError, match=r"task\.shots='7'.*\(set in .*quoted_base\.yaml\)"):
        load_config(write(tmp_path, "defaults: [quoted_base.yaml]\nseed: 3\n"))
    with pytest.raises(ConfigError, match=r"optim\.lr=abc: expected a number"):
        load_config(write(tmp_path, f"defaults: [{base}]\noptim:\n  lr: abc\n"))
    cfg = load_config(write(tmp_path, f"defaults: [{base}]\noptim:\n  lr: 1e-3\n"
                                      "trainer:\n  log_every_n_steps: ${task.shots}\n"))  # fmt: skip
    assert cfg.optim.lr == 1e-3 and cfg.trainer.log_every_n_steps == cfg.task.shots
