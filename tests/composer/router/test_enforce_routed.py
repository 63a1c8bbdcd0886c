"""Inner-loop enforcement on the routed learner: a short meta-training of configs/compositional.yaml
with ``enforce.mode: project`` yields exported per-task graphs that satisfy a tight spec on a dense
grid (independent of the certifier), while the same seed without enforcement violates it."""

from pathlib import Path

import pytest
import torch
import yaml

from metacompose.build import build_family, build_learner, build_optimizer
from metacompose.config import load_config
from metacompose.symbolic import certify, load_spec
from metacompose.verify import graph_forward, module_params, pair_from_params

ROOT = Path(__file__).resolve().parents[3]
DEVIATION, TRUST = 0.05, 0.05
SPEC = {
    "domain": {"box": {"lower": [-3.0], "upper": [3.0]}},
    "trust_regions": [{"module": "outer", "norm": "l2", "bound": TRUST}],
    "deviation": {"max_abs": [DEVIATION]},
}


def _train_and_export(mode: str, spec_path: Path):
    torch.set_num_threads(1)
    cfg = load_config(
        ROOT / "configs" / "compositional.yaml",
        [f"enforce.mode={mode}", f"enforce.spec={spec_path}"],
    )
    learner = build_learner(cfg)
    family = build_family(cfg.task)
    opt = build_optimizer(cfg.optim, learner.parameters())
    g = torch.Generator().manual_seed(0)
    for it in range(3):
        batch = family.sample(4, shots=10, query=10, generator=g, split="train")
        opt.zero_grad()
        learner.meta_step(batch, step=it).objective.backward()
        opt.step()
    test = family.sample(6, shots=10, query=10, generator=torch.Generator().manual_seed(1),
                         split="test")  # fmt: skip
    return learner, learner.export_tasks(test)


def _worst(export) -> tuple[float, float]:
    """Max |f_adapted - f_meta| on 4001 points of [-3, 3], and the L2 change of ``outer``."""
    grid = torch.linspace(-3, 3, 4001, dtype=torch.float64).reshape(-1, 1)
    dev = graph_forward(export.graph, export.adapted, grid)
    dev = dev - graph_forward(export.graph, export.meta, grid)
    keys = [k for k in export.meta if k.startswith("outer.")]
    change = torch.cat([(export.adapted[k] - export.meta[k]).reshape(-1) for k in keys])
    return float(dev.abs().max()), float(change.norm())


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tight.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


def test_project_makes_every_exported_task_satisfy_the_spec(spec_path):
    learner, exports = _train_and_export("project", spec_path)
    stats = learner.enforcer.stats
    # Straight-through training routes hard: the 12 training tasks are enforced, then 6 exported.
    assert stats.checked == 3 * 4 + 6 and stats.projected >= 1
    assert stats.proved + stats.violated + stats.unknown == stats.checked
    spec = load_spec(spec_path)
    for e in exports:
        assert e.choice and set(e.choice) == {"inner", "outer"}
        deviation, change = _worst(e)
        assert deviation <= DEVIATION and change <= TRUST
        # And the certifier agrees on the exported graph with a tier of its own choosing.
        rep = certify(pair_from_params(e.graph, e.meta, e.adapted), spec, tier="refine",
                      module_params=module_params(e.graph, e.meta, e.adapted))  # fmt: skip
        assert rep.status == "proved"


def test_without_enforcement_the_same_seed_violates_the_spec(spec_path):
    learner, exports = _train_and_export("off", spec_path)
    assert learner.enforcer is None
    worst = [_worst(e) for e in exports]
    assert max(d for d, _ in worst) > DEVIATION or max(c for _, c in worst) > TRUST
