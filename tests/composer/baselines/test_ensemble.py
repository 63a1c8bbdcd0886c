"""The two-member ensemble and the stack: each learner's predictions reproduce its own scored
metric, the weight chosen on meta-val is the grid point nearest the exact least-squares weight, and
the stack's weights are the brute-force best of the simplex grid."""

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from metacompose.baselines.compare import EvalPlan, run_method
from metacompose.baselines.ensemble import (
    WEIGHT_GRID,
    PredictsQueries,
    blend_mse,
    choose_weight,
    choose_weights,
    member_predictions,
    run_ensemble,
    run_stack,
    simplex_grid,
    stack_mse,
)
from metacompose.config import load_config
from metacompose.tasks import DigitsFamily, SinusoidFamily

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
TINY = ["model.args.hidden=[8,8]", "data.meta_batch_size=4", "algo.eval_inner_steps=3"]
PLAN = EvalPlan(shots=5, query=5, val_tasks=12, test_tasks=16)


def trained(method: str):
    """``method`` meta-trained for 3 iterations on sinusoids (its own config where it has one)."""
    own = CONFIGS / f"sinusoid_{method}.yaml"
    cfg = load_config(own if own.exists() else CONFIGS / "sinusoid.yaml", TINY)
    if method == "routed":
        body = {"in_features": 1, "hidden": [8], "out_features": 8}
        head = {"in_features": 8, "hidden": [], "out_features": 1, "activate_output": False}
        cfg = OmegaConf.merge(cfg, {"router": {"enabled": True, "template": {
            "nodes": {"body": {"type": "MLPBlock", "candidates": 2, "args": body},
                      "head": {"type": "MLPBlock", "candidates": 1, "args": head}},
            "edges": [["body", "head"]]}}})  # fmt: skip
    return run_method(method, cfg, SinusoidFamily(), PLAN, iterations=3, max_seconds=None)


@pytest.mark.parametrize(
    "method", ["maml", "metasgd", "anil", "routed", "incontext", "cnp", "learned_opt", "gp_dkt"]
)
def test_predictions_reproduce_the_metric_the_learner_was_scored_with(method):
    """The squared error of ``predict_queries`` on the meta-test tasks, at the step chosen on
    meta-val, is the per-task metric ``run_method`` scored through the learner's own
    ``evaluate`` (an independent code path), for every learner kind the ensemble can take."""
    r = trained(method)
    assert isinstance(r.learner, PredictsQueries)
    pred, y = member_predictions(r.learner, SinusoidFamily(), split="test",
                                 n_tasks=PLAN.test_tasks, shots=PLAN.shots, query=PLAN.query,
                                 steps=r.steps, seed=PLAN.seed)  # fmt: skip
    assert pred.shape == y.shape == (PLAN.test_tasks, PLAN.query, 1)
    torch.testing.assert_close(blend_mse(pred, pred, y, 1.0), r.values, rtol=1e-5, atol=1e-6)


def test_chosen_weight_is_the_grid_point_nearest_the_least_squares_weight():
    """The mean MSE of ``w a + (1 - w) b`` is a quadratic in ``w`` minimised at
    ``w* = -<a - b, b - y> / |a - b|^2`` (every task has the same number of points, so the mean
    of per-task means is the grand mean); on a grid, the best point is the one nearest
    ``clip(w*, 0, 1)``. Checked on random members, float64."""
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        y = torch.randn(30, 7, 1, generator=g, dtype=torch.float64)
        a = y + torch.randn(30, 7, 1, generator=g, dtype=torch.float64) * (0.2 + trial / 10)
        b = y + torch.randn(30, 7, 1, generator=g, dtype=torch.float64) + 0.3 * (trial - 10) / 10
        d = a - b
        w_star = float(-(d * (b - y)).sum() / d.pow(2).sum())
        target = min(max(w_star, 0.0), 1.0)
        w, m = choose_weight(a, b, y)
        nearest = min(WEIGHT_GRID, key=lambda p: abs(p - target))
        assert w == pytest.approx(nearest, abs=1e-12), (trial, w_star)
        brute = ((w * a + (1 - w) * b - y) ** 2).mean()
        assert m == pytest.approx(float(brute), rel=1e-12)


def test_a_diverged_member_gets_weight_zero_and_its_nan_does_not_leak():
    y = torch.zeros(4, 3, 1, dtype=torch.float64)
    a = torch.ones_like(y)
    a[2, 1] = float("nan")
    b = torch.full_like(y, 0.5)
    w, m = choose_weight(a, b, y)
    assert w == 0.0 and m == pytest.approx(0.25)
    assert blend_mse(a, b, y, 0.0).isfinite().all()
    with pytest.raises(ValueError, match="every member diverged"):
        choose_weight(a, a, y)


def test_ensemble_is_at_least_as_good_as_either_member_on_meta_val_and_scored_on_test():
    maml, gp = trained("maml"), trained("gp_dkt")
    ens = run_ensemble(maml, gp, SinusoidFamily(), PLAN)
    assert ens.method == "ensemble" and ens.members == ("maml", "gp_dkt")
    assert ens.weight in WEIGHT_GRID
    assert ens.val_mean <= min(maml.val_mean, gp.val_mean) + 1e-9
    assert ens.train_seconds == pytest.approx(maml.train_seconds + gp.train_seconds)
    # the test values are the blend of the members' own scored predictions at that weight
    kw = {"split": "test", "n_tasks": PLAN.test_tasks, "shots": PLAN.shots, "query": PLAN.query,
          "seed": PLAN.seed}  # fmt: skip
    pa, y = member_predictions(maml.learner, SinusoidFamily(), steps=maml.steps, **kw)
    pb, _ = member_predictions(gp.learner, SinusoidFamily(), steps=gp.steps, **kw)
    manual = ((ens.weight * pa + (1 - ens.weight) * pb - y) ** 2).mean((1, 2))
    torch.testing.assert_close(ens.values, manual)


def test_ensemble_refuses_a_member_without_predictions_and_classification():
    maml = trained("maml")
    bare = trained("maml")
    bare.learner = None
    with pytest.raises(ValueError, match="maml cannot return its predictions"):
        run_ensemble(bare, maml, SinusoidFamily(), PLAN)
    with pytest.raises(ValueError, match="regression families only"):
        run_ensemble(maml, maml, DigitsFamily(ways=3, size=8), PLAN)


@pytest.mark.parametrize("k, steps", [(1, 10), (2, 10), (3, 10), (4, 5), (3, 1)])
def test_simplex_grid_holds_every_composition_once(k, steps):
    """``C(steps + k - 1, k - 1)`` distinct points, each non-negative multiples of ``1 / steps``
    summing to one; two members: the weight grid of the ensemble, in its order."""
    grid = simplex_grid(k, steps)
    assert len(grid) == len(set(grid)) == math.comb(steps + k - 1, k - 1)
    for w in grid:
        assert len(w) == k and sum(w) == pytest.approx(1.0, abs=1e-12)
        assert all(x >= 0 and abs(x * steps - round(x * steps)) < 1e-9 for x in w)
    if (k, steps) == (2, 10):
        assert [w[0] for w in grid] == list(WEIGHT_GRID)
    with pytest.raises(ValueError, match="k >= 1"):
        simplex_grid(0)


def test_stack_weights_are_the_brute_force_best_of_the_grid():
    """Three random members: the chosen weights and MSE equal a plain-Python search over every
    ``(i, j, 10 - i - j) / 10`` with the squared errors summed point by point (float64), and the
    chosen MSE is at or below every two-member edge (:func:`choose_weight` on each pair)."""
    g = torch.Generator().manual_seed(1)
    for trial in range(6):
        y = torch.randn(12, 4, 1, generator=g, dtype=torch.float64)
        preds = [y + torch.randn(12, 4, 1, generator=g, dtype=torch.float64) * (0.3 + 0.4 * j)
                 + 0.2 * (trial - 3) * (j - 1) for j in range(3)]  # fmt: skip
        best = None
        for i in range(11):
            for j in range(11 - i):
                w = (i / 10, j / 10, (10 - i - j) / 10)
                total = 0.0
                for t in range(12):
                    for q in range(4):
                        p = sum(w[m] * float(preds[m][t, q, 0]) for m in range(3))
                        total += (p - float(y[t, q, 0])) ** 2
                if best is None or total / 48 < best[1] - 1e-12:
                    best = (w, total / 48)
        weights, m = choose_weights(preds, y)
        assert m == pytest.approx(best[1], rel=1e-10)
        assert weights == pytest.approx(best[0], abs=1e-12), trial
        for a, b in ((0, 1), (0, 2), (1, 2)):
            assert m <= choose_weight(preds[a], preds[b], y)[1] + 1e-12


def test_stack_reads_no_member_of_weight_zero_and_refuses_too_few():
    y = torch.zeros(3, 2, 1, dtype=torch.float64)
    bad = torch.full_like(y, float("nan"))
    good, half = torch.full_like(y, 0.1), torch.full_like(y, 0.5)
    weights, m = choose_weights([bad, good, half], y)
    assert weights[0] == 0 and m == pytest.approx(0.01)
    assert stack_mse([bad, good, half], y, (0.0, 0.5, 0.5)).isfinite().all()
    with pytest.raises(ValueError, match="2 members, 3 weights"):
        stack_mse([good, half], y, (0.2, 0.3, 0.5))
    maml = trained("maml")
    with pytest.raises(ValueError, match="two or more members"):
        run_stack([maml], SinusoidFamily(), PLAN)


def test_stack_of_three_learners_is_scored_on_test_as_its_blend():
    """A stack of MAML, Meta-SGD and the GP: meta-val MSE at or below each member's and the
    two-member ensemble's; test values are the blend of the members' own predictions."""
    members = [trained("maml"), trained("metasgd"), trained("gp_dkt")]
    st = run_stack(members, SinusoidFamily(), PLAN)
    assert st.method == "stack" and st.members == ("maml", "metasgd", "gp_dkt")
    assert st.val_mean <= min(r.val_mean for r in members) + 1e-9
    assert (
        st.val_mean <= run_ensemble(members[0], members[2], SinusoidFamily(), PLAN).val_mean + 1e-9
    )
    assert st.weight == st.weights[0] and sum(st.weights) == pytest.approx(1.0)
    kw = {"split": "test", "n_tasks": PLAN.test_tasks, "shots": PLAN.shots, "query": PLAN.query,
          "seed": PLAN.seed}  # fmt: skip
    ps = [member_predictions(r.learner, SinusoidFamily(), steps=r.steps, **kw) for r in members]
    y = ps[0][1]
    manual = ((sum(w * p for w, (p, _) in zip(st.weights, ps, strict=True)) - y) ** 2).mean((1, 2))
    torch.testing.assert_close(st.values, manual)
