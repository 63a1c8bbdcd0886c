"""The bounds of ``metacompose.config.limits``: every limit accepts its own value and refuses the
next one up (an off-by-one either way fails here)."""

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from metacompose.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs"

# (config, key, value at the limit, value just past it)
EDGES = [
    ("compositional", "router.anchors", "1024", "1025"),
    ("compositional", "router.eval_top_k", "1024", "1025"),
    ("compositional", "router.low_rank", "256", "257"),
    ("compositional", "router.hidden", "4096", "4097"),
    ("compositional", "router.balance_weight", "1000", "1000.5"),
    ("compositional", "router.tau_start", "100", "100.5"),
    ("compositional", "router.tau_end", "0.001", "0.0009"),
    ("compositional", "enforce.timeout_s", "3600", "3600.5"),
    ("sinusoid_incontext", "algo.args.layers", "64", "65"),
    ("sinusoid_incontext", "algo.args.heads", "256", "257"),
    ("sinusoid_cnp", "algo.args.layers", "64", "65"),
    ("sinusoid_learned_opt", "algo.args.hidden", "128", "129"),
    ("sinusoid_learned_opt", "algo.args.max_step", "100", "100.5"),
    ("sinusoid_learned_opt", "algo.args.guard_slack", "1000", "1000.5"),
]


@pytest.mark.parametrize(
    ("config", "key", "at", "past"), EDGES, ids=[f"{c}-{k}" for c, k, *_ in EDGES]
)
def test_a_limit_accepts_its_value_and_refuses_the_next(config, key, at, past):
    path = CONFIGS / f"{config}.yaml"
    extra = ["router.tau_start=100"] if key == "router.tau_end" else []  # keep tau_end <= start
    cfg = load_config(path, [*extra, f"{key}={at}"])
    assert float(OmegaConf.select(cfg, key)) == float(at)
    with pytest.raises(ConfigError, match=re.escape(f"{key}=")) as refused:
        load_config(path, [*extra, f"{key}={past}"])
    assert float(str(refused.value).split(f"{key}=")[1].split(":")[0]) == float(past)
