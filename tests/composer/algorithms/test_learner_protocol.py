"""Both learners satisfy the ``Learner`` protocol, and what accepts a ``Learner`` (the Lightning
module, evaluation, forgetting, verification) works with either."""

from pathlib import Path

import pytest
import torch

from metacompose.algorithms import Learner, ParameterAdapter
from metacompose.build import build_learner
from metacompose.config import load_config
from metacompose.evaluate import evaluate
from metacompose.report.forgetting import sequential_metrics, supports_forgetting
from metacompose.tasks.base import derive_seed
from metacompose.training.module import MetaLearningModule
from metacompose.verify.adaptation import adapt_tasks

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
SMALL = ["data.meta_batch_size=4", "algo.eval_inner_steps=2"]


@pytest.fixture(params=["sinusoid", "compositional"])
def built(request):
    cfg = load_config(CONFIGS / f"{request.param}.yaml", SMALL)
    return build_learner(cfg), cfg


def test_both_learners_are_learners_and_only_the_plain_one_adapts_in_sequence(built):
    learner, cfg = built
    assert isinstance(learner, Learner)
    assert isinstance(learner, ParameterAdapter) == (not cfg.router.enabled)
    assert supports_forgetting(learner) == (not cfg.router.enabled)


def test_lightning_module_evaluate_and_verify_accept_either(built):
    learner, cfg = built
    from metacompose.build import build_family

    family = build_family(cfg.task)
    g = torch.Generator().manual_seed(derive_seed(0, "t"))
    batch = family.sample(4, shots=cfg.task.shots, query=cfg.task.query, generator=g)
    module = MetaLearningModule(learner=learner, optimizer=torch.optim.SGD.__call__)
    module.learner.meta_step(batch, step=0).objective.backward()
    result = evaluate(learner.eval(), family, n_tasks=4, steps=2, batch_size=4)
    assert len(result.mean) == 3 and all(torch.isfinite(torch.tensor(result.mean)))
    exported = adapt_tasks(learner, batch, steps=2)
    assert len(exported) == 4
    for a in exported:
        assert set(a.meta) == set(a.adapted) == set(dict(a.graph.named_parameters()))
    if supports_forgetting(learner):
        m = sequential_metrics(learner, family, n_sequences=2, length=2, shots=5, query=5, steps=1)
        assert m.shape == (2, 2, 2)
    else:
        with pytest.raises(ValueError, match="no plain parameter dict"):
            sequential_metrics(learner, family, n_sequences=2, length=2, shots=5, query=5, steps=1)


@pytest.mark.parametrize(
    ("config", "slots", "shared"),
    [
        ("sinusoid", None, None),
        ("compositional", None, False),  # routed: its pool's routed slots
        ("from_data_chain_annealed", ["f", "g"], False),
        ("from_data_sums_annealed_shared", ["f", "g"], True),
    ],
)
def test_routing_learners_name_their_candidate_slots(config, slots, shared):
    """``RoutingLearner`` / ``candidate_slots`` is what evaluation and ``inspect`` read of a
    learner that chooses per task: a plain learner has none; every routed one names its slots,
    their candidate counts and whether one bank serves every slot, and its choices agree."""
    from metacompose.algorithms.learner import RoutingLearner, candidate_slots
    from metacompose.build import build_family

    cfg = load_config(CONFIGS / f"{config}.yaml", ["data.meta_batch_size=4"])
    family = build_family(cfg.task)
    learner = build_learner(cfg, family).eval()
    got = candidate_slots(learner)
    assert (got is None) == (shared is None) == (not isinstance(learner, RoutingLearner))
    if got is None:
        return
    assert got.shared is shared and got.routed_slots
    assert slots is None or list(got.routed_slots) == slots
    g = torch.Generator().manual_seed(derive_seed(0, "slots"))
    batch = family.sample(4, shots=cfg.task.shots, query=cfg.task.query, generator=g)
    with torch.no_grad():
        choices = learner.choices(batch)
    assert set(choices) <= set(got.routed_slots)
    for slot, c in choices.items():
        assert c.shape == (4,) and int(c.min()) >= 0 and int(c.max()) < got.num_candidates[slot]


@pytest.mark.parametrize(
    "config", ["sinusoid", "compositional", "from_data_chain_annealed", "sinusoid_incontext",
               "sinusoid_learned_opt", "sinusoid_cnp"],
)  # fmt: skip
def test_protocol_checks_hold_when_attributes_are_looked_up_statically(config):
    """Python 3.12+ checks runtime protocols with ``inspect.getattr_static``, which does not see
    an ``nn.Module``'s submodules; every learner kind passes the same protocols either way."""
    import inspect
    import typing

    from metacompose.algorithms.learner import RoutingLearner
    from metacompose.build import build_family

    cfg = load_config(CONFIGS / f"{config}.yaml", ["data.meta_batch_size=4"])
    learner = build_learner(cfg, build_family(cfg.task))
    for proto in (Learner, ParameterAdapter, RoutingLearner):
        names = getattr(proto, "__protocol_attrs__", None) or typing._get_protocol_attrs(proto)
        static = []
        for name in names:
            try:
                inspect.getattr_static(learner, name)
            except AttributeError:
                continue
            static.append(name)
        assert (len(static) == len(names)) == isinstance(learner, proto), (proto, names, static)
    assert isinstance(learner, Learner)
