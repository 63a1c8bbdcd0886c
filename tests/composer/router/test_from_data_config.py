"""The data-routed configs (configs/from_data*.yaml): they build without a descriptor, the EM and
top-k options reach the policies, and bad values fail in one line naming the key."""

import pytest

from metacompose.build import build_family, build_learner
from metacompose.config import ConfigError, load_config
from metacompose.router.policies import EMRouting, TopKSupportRouting

CONFIGS = [
    "configs/from_data.yaml",
    "configs/from_data_wide.yaml",
    "configs/from_data_sums.yaml",
    "configs/from_data_ctx.yaml",
]


@pytest.mark.parametrize("path", CONFIGS)
def test_from_data_configs_route_by_em_without_a_descriptor(path):
    cfg = load_config(path)
    assert cfg.task.args.get("descriptor", "none") == "none" and not cfg.router.descriptor_slots
    learner = build_learner(cfg, build_family(cfg.task))
    assert isinstance(learner.training_routing, EMRouting)
    assert learner.training_routing.capacity == cfg.router.em_capacity
    assert isinstance(learner.eval_routing, TopKSupportRouting)
    assert learner.eval_routing.k == cfg.router.eval_top_k
    assert len(learner.graph.routed_slots) == 2
    assert set(learner.module_keys) == set(learner.graph.param_keys(list(cfg.algo.adapt)))


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("router.routing=hardem", "router.routing=hardem"),
        ("router.eval_routing=topK", "router.eval_routing=topK"),
        ("router.em_capacity=0.5", "router.em_capacity=0.5"),
        ("router.em_capacity=-1", "router.em_capacity=-1"),
        ("router.em_capacity_steps=-3", "router.em_capacity_steps=-3"),
        ("router.em_prior_weight=nan", "router.em_prior_weight=nan"),
        ("router.eval_top_k=0", "router.eval_top_k=0"),
    ],
)
def test_bad_em_values_fail_in_one_line_naming_the_key(override, named):
    with pytest.raises(ConfigError) as e:
        load_config("configs/from_data.yaml", [override])
    assert named in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["router.search_steps=10"], "router.routing=em"),
        (["router.anchors=4"], "router.anchors"),
        (["router.routing=uniform"], "router.routing=uniform"),
    ],
)
def test_combinations_em_does_not_serve_fail_in_one_line(overrides, named):
    cfg = load_config("configs/from_data.yaml", overrides)
    with pytest.raises(ConfigError) as e:
        build_learner(cfg, build_family(cfg.task))
    assert named in str(e.value) and "\n" not in str(e.value)
