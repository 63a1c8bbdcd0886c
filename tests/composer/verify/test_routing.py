"""The router's best valid choice equals brute-force enumeration under the rules, and the plain
argmax when the rules allow everything."""

import itertools
from pathlib import Path

import pytest
import torch

from metacompose.build import build_family, build_learner
from metacompose.config import ConfigError, load_config
from metacompose.modules.linear import RegressionHead
from metacompose.modules.mlp import MLPBlock, ResidualMLPBlock
from metacompose.router.policies import ArgmaxRouting
from metacompose.router.pool import ModulePool
from metacompose.symbolic import rules_from_dict
from metacompose.verify import best_valid_choice
from metacompose.verify.routing import RulesValidRouting


def _pool() -> ModulePool:
    torch.manual_seed(0)
    return ModulePool(
        slots={
            "a": [
                MLPBlock(in_features=2, hidden=[], out_features=4),
                MLPBlock(in_features=2, hidden=[30], out_features=4),
                MLPBlock(in_features=2, hidden=[8], out_features=4),
            ],
            "b": [
                ResidualMLPBlock(features=4, hidden=3),
                MLPBlock(in_features=4, hidden=[50], out_features=4),
                ResidualMLPBlock(features=4, hidden=40),
            ],
            "h": [RegressionHead(in_features=4, out_features=1)],
        },
        edges=[("a", "b"), ("b", "h")],
    )


def _brute(pool, logits, rules_dict, t):
    """Reference: enumerate joint choices, check the rules in plain Python, keep the best."""
    best, arg = -float("inf"), None
    logp = {s: torch.log_softmax(lg.double(), -1)[t] for s, lg in logits.items()}
    for ka, kb in itertools.product(range(3), range(3)):
        mods = {"a": pool.candidate("a", ka), "b": pool.candidate("b", kb)}
        n_params = (
            sum(m.num_parameters() for m in mods.values()) + pool.candidate("h", 0).num_parameters()
        )
        if n_params > rules_dict.get("param_budget", 10**9):
            continue
        forb = rules_dict.get("slots", {}).get("b", {}).get("forbidden", [])
        if type(mods["b"]).__name__ in forb:
            continue
        score = float(logp["a"][ka] + logp["b"][kb])
        if score > best:
            best, arg = score, (ka, kb)
    return arg


@pytest.mark.parametrize(
    "rules_dict",
    [
        {},
        {"param_budget": 400},
        {"slots": {"b": {"forbidden": ["ResidualMLPBlock"]}}},
        {"param_budget": 600, "slots": {"b": {"forbidden": ["MLPBlock"]}}},
    ],
)
def test_best_valid_choice_matches_brute_force(rules_dict):
    pool = _pool()
    gen = torch.Generator().manual_seed(3)
    logits = {s: 3 * torch.randn(12, 3, generator=gen) for s in ("a", "b")}
    got = best_valid_choice(pool, logits, rules_from_dict(rules_dict))
    for t in range(12):
        assert (int(got["a"][t]), int(got["b"][t])) == _brute(pool, logits, rules_dict, t)
    if not rules_dict:
        assert all(torch.equal(got[s], logits[s].argmax(-1)) for s in logits)


def test_infeasible_rules_name_the_rule():
    pool = _pool()
    logits = {s: torch.zeros(1, 3) for s in ("a", "b")}
    with pytest.raises(ValueError, match="param_budget"):
        best_valid_choice(pool, logits, rules_from_dict({"param_budget": 10}))


def test_router_rules_config_drives_the_hard_decision(tmp_path):
    root = Path(__file__).resolve().parents[3]
    config = root / "configs" / "compositional.yaml"
    plain = build_learner(load_config(config))
    assert isinstance(plain.eval_routing, ArgmaxRouting)
    ok = build_learner(
        load_config(config, [f"router.rules={root}/configs/rules/compositional.yaml"])
    )
    assert isinstance(ok.eval_routing, RulesValidRouting)
    ok.eval()
    plain.eval()
    family = build_family(load_config(config).task)
    family_batch = family.sample(5, shots=10, query=10, generator=torch.Generator().manual_seed(0))
    a, b = ok.choices(family_batch), plain.choices(family_batch)
    assert all(torch.equal(a[s], b[s]) for s in b)  # rules that allow everything: argmax
    bad = tmp_path / "rules.yaml"
    bad.write_text("slots: {inner: {forbidden: [MLPBlock]}}\n")
    strict = build_learner(load_config(config, [f"router.rules={bad}"]))
    strict.eval()
    with pytest.raises(ValueError, match="forbidden=MLPBlock"):
        strict.choices(family_batch)
    broken = tmp_path / "broken.yaml"
    broken.write_text("max_depth: -3\n")
    with pytest.raises(ConfigError, match=r"router\.rules"):
        build_learner(load_config(config, [f"router.rules={broken}"]))
