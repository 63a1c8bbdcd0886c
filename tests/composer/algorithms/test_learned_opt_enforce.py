"""``enforce.mode: project`` on the learned optimizer (``algo.name: learned_opt``): after a few
meta-iterations of configs/sinusoid_learned_opt.yaml every exported task's adaptation meets a tight
deviation spec on a dense float64 grid; with enforcement off the same seed breaks it; ``check``
(certify, change nothing) between every step leaves the guarded learned-rule numerics unchanged."""

from pathlib import Path

import pytest
import torch
import yaml

from metacompose.build import build_family, build_learner
from metacompose.config import load_config
from metacompose.verify import graph_forward

ROOT = Path(__file__).resolve().parents[3]
MAX_DEV = 0.3  # max over x in [-5, 5] of |f_adapted(x) - f_meta(x)|
SPEC = {"domain": {"box": {"lower": [-5.0], "upper": [5.0]}}, "deviation": {"max_abs": [MAX_DEV]}}


def _train_and_export(tmp_path, mode: str, *, every: str = "end", short: bool = False):
    """Three meta-iterations, then the exported tasks of a held-out batch (and the learner);
    ``short``: 2-step unrolls and 6 evaluation steps (``every: step`` certifies each step)."""
    torch.set_num_threads(1)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    cfg = load_config(
        ROOT / "configs" / "sinusoid_learned_opt.yaml",
        [f"enforce.mode={mode}", f"enforce.spec={spec}", f"enforce.every={every}",
         "algo.eval_inner_steps=15", "algo.args.warmup=0", "algo.args.random_net_prob=0",
         *(["algo.eval_inner_steps=6", "algo.args.horizon=2",
            "algo.args.truncation=2"] if short else [])],
    )  # fmt: skip
    learner = build_learner(cfg)
    family = build_family(cfg.task)
    opt = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(3):
        batch = family.sample(4, shots=cfg.task.shots, query=cfg.task.query, generator=g,
                              split="train")  # fmt: skip
        opt.zero_grad()
        out = learner.meta_step(batch, step=step)
        assert bool(torch.isfinite(out.objective))
        out.objective.backward()
        opt.step()
    batch = family.sample(4, shots=cfg.task.shots, query=cfg.task.query, generator=g,
                          split="val")  # fmt: skip
    return learner, learner.export_tasks(batch)


def _deviations(exports) -> list[float]:
    grid = torch.linspace(-5, 5, 20001, dtype=torch.float64).reshape(-1, 1)
    return [
        float((graph_forward(e.graph, e.adapted, grid) - graph_forward(e.graph, e.meta, grid))
              .abs().max())
        for e in exports
    ]  # fmt: skip


@pytest.mark.parametrize("every", ["end", "step"])
def test_project_keeps_every_exported_task_within_the_spec(tmp_path, every):
    learner, exports = _train_and_export(tmp_path, "project", every=every, short=every == "step")
    stats = learner.enforcer.stats
    steps = (3 * 2 + 6) if every == "step" else 3 + 1  # per task: training unrolls + export
    assert stats.checked == 4 * steps  # every meta-training task and every exported one
    assert stats.projected + stats.rolled_back > 0  # the spec bit: some adaptations repaired
    devs = _deviations(exports)
    assert max(devs) <= MAX_DEV, devs
    assert max(devs) > 0  # still adapts (not every task rolled back to the meta weights)


def test_without_enforcement_the_same_seed_breaks_the_spec(tmp_path):
    learner, exports = _train_and_export(tmp_path, "off")
    assert getattr(learner, "enforcer", None) is None
    assert max(_deviations(exports)) > MAX_DEV


def test_check_between_steps_changes_nothing(tmp_path):
    """The optimizer state (moments, step, guard scale) carries across the enforcer's calls."""
    _, off = _train_and_export(tmp_path, "off", short=True)
    learner, checked = _train_and_export(tmp_path, "check", every="step", short=True)
    assert learner.enforcer.stats.checked == 4 * (3 * 2 + 6)
    for a, b in zip(off, checked, strict=True):
        for k in a.adapted:
            torch.testing.assert_close(b.meta[k], a.meta[k], rtol=0, atol=0)
            torch.testing.assert_close(b.adapted[k], a.adapted[k], rtol=0, atol=0)
