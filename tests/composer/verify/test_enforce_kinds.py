"""``enforce.mode: project`` per model kind: accepted (and every meta-batch task is certified, then
kept or repaired) for the plain sinusoid MLP, the routed compositional learner, grouped regression
and the digits classifier (the learned optimizer: tests/composer/algorithms/
test_learned_opt_enforce.py); refused in one line, saying why, where no per-task weights exist or
no single graph per task does (in-context, CNP, uniform routing)."""

from pathlib import Path

import pytest
import torch

from metacompose.build import build_family, build_learner
from metacompose.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[3]


def _config(name: str, spec: str, *overrides: str):
    return load_config(
        ROOT / "configs" / f"{name}.yaml",
        ["enforce.mode=project", f"enforce.spec={ROOT}/configs/bounds/{spec}.yaml", *overrides],
    )


def _enforced_step(cfg, tasks: int = 2):
    """One meta-step on ``tasks`` training tasks; the enforcer's counts after it."""
    torch.set_num_threads(1)
    learner = build_learner(cfg)
    family = build_family(cfg.task)
    g = torch.Generator().manual_seed(0)
    batch = family.sample(tasks, shots=cfg.task.shots, query=cfg.task.query, generator=g,
                          split="train")  # fmt: skip
    step = learner.meta_step(batch)
    step.objective.backward()
    assert bool(torch.isfinite(step.objective))
    stats = learner.enforcer.stats
    assert stats.checked == tasks
    assert stats.proved + stats.projected + stats.rolled_back == tasks
    return stats


@pytest.mark.parametrize(
    ("name", "spec"), [("sinusoid", "sinusoid"), ("compositional", "compositional")]
)
def test_accepted_for_plain_and_routed_regression(name, spec):
    _enforced_step(_config(name, spec))


def test_accepted_for_grouped_regression():
    cfg = _config("mathachieve", "grouped")
    try:
        build_family(cfg.task)
    except ConfigError as e:  # the data set is not on this machine: the build path alone
        pytest.skip(f"grouped data missing: {e}")
    _enforced_step(cfg)


def test_accepted_for_the_digits_classifier():
    cfg = _config("glyphs_5way1shot", "classifier", "enforce.max_halvings=0")
    cfg.task.family, cfg.task.args = "digits", {"ways": 5, "size": 8}
    cfg.model.args.image_size, cfg.model.args.depth, cfg.model.args.filters = 8, 2, 4
    _enforced_step(cfg, tasks=1)


def test_routed_soft_training_batches_go_unenforced_but_evaluation_is():
    cfg = _config("compositional", "compositional", "router.straight_through=false")
    learner = build_learner(cfg)
    family = build_family(cfg.task)
    batch = family.sample(2, shots=10, query=10, generator=torch.Generator().manual_seed(0),
                          split="train")  # fmt: skip
    learner.meta_step(batch)  # soft Gumbel-softmax weights: no single graph per task
    assert learner.enforcer.stats.checked == 0
    learner.export_tasks(batch)  # argmax routing at evaluation: each task's graph is certified
    assert learner.enforcer.stats.checked == 2


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("sinusoid_incontext", "no per-task weights"),
        ("sinusoid_cnp", "no per-task weights"),
        ("compositional_uniform", "router.routing=uniform mixes every candidate"),
    ],
)
def test_refused_in_one_line(name, why):
    spec = "compositional" if name.startswith("compositional") else "sinusoid"
    with pytest.raises(ConfigError, match=r"^enforce\.mode: ") as info:
        build_learner(_config(name, spec))
    assert why in str(info.value) and "\n" not in str(info.value)
