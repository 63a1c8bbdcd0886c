"""Pooled pre-training and the method runner on tiny budgets."""

from pathlib import Path

import torch
from omegaconf import OmegaConf

from metacompose.baselines.compare import EvalPlan, best_step, paired_difference, run_method
from metacompose.baselines.pretrain import pretrain_pooled
from metacompose.config import load_config
from metacompose.models import conv_graph, mlp_graph
from metacompose.tasks import DigitsFamily, SinusoidFamily

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "sinusoid.yaml"


def test_pretrain_regression_reduces_pooled_loss():
    graph = mlp_graph(hidden=[16, 16])
    r = pretrain_pooled(graph, SinusoidFamily(), iterations=60, tasks_per_batch=8, lr=1e-2)
    assert r.iterations == 60 and sum(r.losses[-10:]) < sum(r.losses[:10])


def test_pretrain_classification_uses_global_labels_and_zeroes_the_head():
    fam = DigitsFamily(ways=3, size=8)
    graph = conv_graph(image_size=8, n_way=3, filters=4, depth=2)
    r = pretrain_pooled(graph, fam, iterations=30, tasks_per_batch=4, shots=2, query=2, lr=1e-2,
                        n_classes=10)  # fmt: skip
    assert sum(r.losses[-5:]) < sum(r.losses[:5])
    assert all((p == 0).all() for p in graph.node("head").parameters())


def test_best_step_direction():
    curve = torch.tensor([[3.0, 1.0], [1.0, 1.0], [2.0, 2.0]])  # (S+1, N): means 2, 1, 2
    assert best_step(curve, "mse") == 1 and best_step(curve, "accuracy") in (0, 2)
    diverged = torch.tensor([[3.0, 1.0], [float("nan"), 0.0], [2.0, 2.0]])
    assert best_step(diverged, "mse") == 0


def test_run_method_scores_on_shared_tasks():
    cfg = load_config(CONFIG, ["model.args.hidden=[8,8]", "data.meta_batch_size=4",
                               "algo.eval_inner_steps=3"])  # fmt: skip
    fam = SinusoidFamily()
    plan = EvalPlan(shots=5, query=5, val_tasks=6, test_tasks=8)
    maml = run_method("maml", cfg, fam, plan, iterations=3, max_seconds=None)
    scratch = run_method("scratch", cfg, fam, plan, iterations=0, max_seconds=None,
                         finetune_lrs=(0.01,), finetune_steps=3)  # fmt: skip
    assert maml.train_iterations == 3 and 0 <= maml.steps <= 3 and maml.values.shape == (8,)
    assert scratch.lr == 0.01 and scratch.test.n == 8
    d = paired_difference(maml, scratch)
    torch.testing.assert_close(
        torch.tensor(d.mean, dtype=torch.float64), (maml.values - scratch.values).mean()
    )
    assert OmegaConf.to_container(cfg)["algo"]["name"] == "maml"  # the config is not mutated


def test_eval_steps_widens_the_meta_learners_step_choice():
    """``eval_steps`` lets meta-val pick beyond ``algo.eval_inner_steps``; with a tiny step size
    the query loss keeps falling, so the choice must land beyond the config's 2 steps."""
    cfg = load_config(CONFIG, ["model.args.hidden=[8,8]", "data.meta_batch_size=4",
                               "algo.eval_inner_steps=2", "algo.inner_lr=0.001"])  # fmt: skip
    plan = EvalPlan(shots=10, query=10, val_tasks=16, test_tasks=8)
    capped = run_method("maml", cfg, SinusoidFamily(), plan, iterations=1, max_seconds=None)
    wide = run_method("maml", cfg, SinusoidFamily(), plan, iterations=1, max_seconds=None,
                      eval_steps=12)  # fmt: skip
    assert capped.steps <= 2 < wide.steps <= 12
    assert wide.test.mean < capped.test.mean


def test_run_method_trains_the_other_learner_kinds_on_the_same_tasks():
    """In-context learners score with no inner step even when meta-val may pick up to 12; the
    learned optimizer scores after the step count meta-val picks, within the config's 3."""
    cfg = load_config(CONFIG, ["model.args.hidden=[8]", "model.args.out_features=8",
                               "data.meta_batch_size=4", "algo.eval_inner_steps=3"])  # fmt: skip
    fam = SinusoidFamily()
    plan = EvalPlan(shots=5, query=5, val_tasks=6, test_tasks=8)
    for method in ("incontext", "cnp"):
        r = run_method(method, cfg, fam, plan, iterations=2, max_seconds=None, eval_steps=12)
        assert r.steps == 0 and r.train_iterations == 2 and r.values.shape == (8,)
        assert torch.isfinite(r.values).all()
    # the learned optimizer adapts the graph itself: its output is the 1-d target
    head = load_config(CONFIG, ["model.args.hidden=[8]", "data.meta_batch_size=4",
                                "algo.eval_inner_steps=3"])  # fmt: skip
    lo = run_method("learned_opt", head, fam, plan, iterations=2, max_seconds=None)
    assert 0 <= lo.steps <= 3 and torch.isfinite(lo.values).all()
    assert OmegaConf.to_container(cfg)["algo"]["name"] == "maml"
