"""Composed run configs: ``defaults:`` base files and ``copies`` candidates (metacompose.config.compose)."""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from metacompose.config import ConfigError, RunConfig, load_config
from metacompose.config.compose import read_layers

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "configs"
RUN_CONFIGS = sorted(CONFIGS.glob("*.yaml"))
BASES = sorted((CONFIGS / "base").glob("*.yaml"))
SNAPSHOT = ROOT / "tests" / "fixtures" / "resolved_configs.json"


def schema_keys(snapshot: dict) -> dict:
    """``snapshot`` less the keys the schema no longer has (options deleted since it was taken)."""
    schema = OmegaConf.to_container(OmegaConf.structured(RunConfig))
    return {
        k: {kk: vv for kk, vv in v.items() if kk in schema[k]} if isinstance(schema[k], dict) else v
        for k, v in snapshot.items()
        if k in schema
    }


def test_every_shipped_config_resolves_as_before_composition():
    """Every configs/*.yaml resolves to the config it resolved to when each file was written out
    in full (tests/fixtures/resolved_configs.json, the ``OmegaConf.to_container(load_config(path),
    resolve=True)`` of each file before ``defaults:`` existed, keyed by file stem). Keys that the
    schema has since dropped (dead router options such as ``router.amortized``) are left out of
    the comparison; every other key and value must be equal. Configs added since are not in it."""
    snapshot = json.loads(SNAPSHOT.read_text())
    assert len(snapshot) == 34
    for stem, before in snapshot.items():
        resolved = OmegaConf.to_container(load_config(CONFIGS / f"{stem}.yaml"), resolve=True)
        resolved.pop("verify", None)  # added since the snapshot: the spec `metacompose verify` uses
        resolved.pop("restart", None)  # added since: block restarts after training (annealed_sum)
        resolved["algo"].pop("args", None)  # added since: learner arguments (incontext, ...)
        resolved["data"].pop("memory_budget_mb", None)  # added since: budget of the task chunks
        resolved["algo"].pop("per_step_lr", None)  # added since: MAML++ per-step step sizes
        resolved["algo"].pop("per_step_bn", None)  # added since: MAML++ per-step norm weights
        resolved["algo"].pop("eval_guard", None)  # added since: the evaluation guard
        resolved["trainer"].pop("steps_per_call", None)  # added since: meta-steps per batch
        if resolved["algo"]["vectorize"] == "auto":  # the default since (was true): vmap or loop
            resolved["algo"]["vectorize"] = True
        assert resolved == schema_keys(before), stem


def test_every_base_is_used_and_reads_as_a_partial_config():
    """Bases live in configs/base/ (not run configs: the configs/*.yaml glob skips them); each is
    included by some run config and merges onto the schema (its own defaults too)."""
    used = {layer.path.resolve() for p in RUN_CONFIGS for layer in read_layers(p)}
    for base in BASES:
        assert base.resolve() in used, f"{base.name} is included by no run config"
        cfg = OmegaConf.structured(RunConfig)
        for layer in read_layers(base):
            cfg = OmegaConf.merge(cfg, OmegaConf.create(layer.raw))


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_bases_merge_in_order_relative_to_the_including_file(tmp_path):
    write(tmp_path, "base/a.yaml", "defaults: [b.yaml]\nseed: 1\noptim: {lr: 0.5}\n")
    write(tmp_path, "base/b.yaml", "seed: 2\ntrainer: {max_steps: 7}\noptim: {name: sgd}\n")
    write(tmp_path, "base/c.yaml", "seed: 3\n")
    run = write(tmp_path, "run.yaml", "defaults: [base/a.yaml, base/c.yaml]\noptim: {lr: 0.25}\n")
    cfg = load_config(run, ["trainer.max_steps=9"])
    assert cfg.seed == 3  # c after a (and a's own base b before a)
    assert cfg.optim.name == "sgd" and cfg.optim.lr == 0.25  # mappings merge key by key
    assert cfg.trainer.max_steps == 9  # overrides last
    assert "defaults" not in cfg and "defaults" not in OmegaConf.to_yaml(cfg)


def test_a_list_replaces_the_base_list(tmp_path):
    write(tmp_path, "base.yaml", "model: {args: {in_features: 1, hidden: [40, 40]}}\n")
    run = write(tmp_path, "run.yaml", "defaults: [base.yaml]\nmodel: {args: {hidden: [8]}}\n")
    assert OmegaConf.to_container(load_config(run).model.args) == {"in_features": 1, "hidden": [8]}


@pytest.mark.parametrize(
    "files, match",
    [
        (
            {"run.yaml": "defaults: [a.yaml]\n", "a.yaml": "defaults: [run.yaml]\n"},
            r"run\.yaml: defaults cycle: \S*run\.yaml -> \S*a\.yaml -> \S*run\.yaml$",
        ),
        ({"run.yaml": "defaults: [nope.yaml]\n"}, r"run\.yaml: defaults: 'nope\.yaml' not found"),
        ({"run.yaml": "defaults: base.yaml\n"}, r"run\.yaml: defaults: expected a list"),
        (
            {"run.yaml": "defaults: [a.yaml, b.yaml]\n", "a.yaml": "defaults: [c.yaml]\n",
             "b.yaml": "defaults: [c.yaml]\n", "c.yaml": "seed: 1\n"},
            r"run\.yaml: defaults: \S*c\.yaml is reached twice",
        ),
        (
            {"run.yaml": "defaults: [a.yaml]\n", "a.yaml": "task:\n  shotz: 3\n"},
            r"run\.yaml: unknown key 'task\.shotz' \(set in \S*a\.yaml\)$",
        ),
        (
            {"run.yaml": "defaults: [a.yaml]\n", "a.yaml": "optim:\n  lr: 1\n  lr: 2\n"},
            r"a\.yaml: not valid YAML: duplicate key 'lr'",
        ),
        (
            {"run.yaml": "defaults: [a.yaml]\nseed: 1\n", "a.yaml": "optim:\n  lr: -1.0\n"},
            r"run\.yaml: optim\.lr=-1\.0: must be > 0 \(set in \S*a\.yaml\)$",
        ),
        (
            {"run.yaml": "defaults: [a.yaml]\noptim:\n  lr: -1.0\n", "a.yaml": "seed: 1\n"},
            r"run\.yaml: optim\.lr=-1\.0: must be > 0$",
        ),
        ({"run.yaml": ""}, r"run\.yaml: the file is empty \(no keys and no defaults\)"),
        ({"run.yaml": "# only a comment\n"}, r"run\.yaml: the file is empty"),
        ({"run.yaml": "defaults: [a.yaml]\n", "a.yaml": "\n"}, r"a\.yaml: the file is empty"),
    ],
)  # fmt: skip
def test_bad_defaults_are_one_line_errors_naming_the_files(tmp_path, files, match):
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(ConfigError, match=match) as e:
        load_config(tmp_path / "run.yaml")
    assert "\n" not in str(e.value)


ROUTED = """\
router:
  enabled: true
  template:
    nodes:
      inner:
        candidates:
          - {copies: 3, type: MLPBlock, args: {in_features: 1, hidden: [4], out_features: 1}}
          - {type: Identity, args: {features: 1}}
      outer: {type: MLPBlock, candidates: 2, args: {in_features: 1, hidden: [4], out_features: 1}}
    edges: [[inner, outer]]
"""


def test_copies_expand_to_the_explicit_list(tmp_path):
    cfg = load_config(write(tmp_path, "run.yaml", ROUTED))
    nodes = OmegaConf.to_container(cfg.router.template.nodes)
    mlp = {"type": "MLPBlock", "args": {"in_features": 1, "hidden": [4], "out_features": 1}}
    assert nodes["inner"]["candidates"] == [
        mlp,
        mlp,
        mlp,
        {"type": "Identity", "args": {"features": 1}},
    ]
    assert nodes["outer"] == {**mlp, "candidates": 2}  # the slot-level count is the pool's own form
    assert "copies" not in OmegaConf.to_yaml(cfg)


@pytest.mark.parametrize("copies", ["0", "two", "2.5"])
def test_bad_copies_name_the_item(tmp_path, copies):
    write(tmp_path, "base.yaml", ROUTED.replace("copies: 3", f"copies: {copies}"))
    run = write(tmp_path, "run.yaml", "defaults: [base.yaml]\n")
    with pytest.raises(
        ConfigError,
        match=r"run\.yaml: router\.template\.nodes\.inner\.candidates\[0\]\.copies=\S+: expected "
        r"a whole number >= 1 \(set in \S*base\.yaml\)$",
    ):
        load_config(run)
