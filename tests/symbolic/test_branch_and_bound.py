import pytest
import torch

from metacompose.symbolic.branch_and_bound import branch_and_bound
from metacompose.symbolic.objectives import Objective
from metacompose.symbolic.self_test import random_pair


def _grid_max(pair, obj, lo, hi):
    x = torch.linspace(float(lo), float(hi), 20001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        return float(obj.value(pair, x).max())


@pytest.mark.parametrize("seed", range(6))
def test_decides_claims_around_the_true_maximum(seed):
    g = torch.Generator().manual_seed(seed)
    pair = random_pair(g, input_dim=1, width=12, residual=seed % 2 == 1, scale=0.1)
    lo, hi = torch.tensor([[-3.0]], dtype=torch.float64), torch.tensor([[3.0]], dtype=torch.float64)
    for obj in (
        Objective("deviation", 0),
        Objective("output_upper", 0),
        Objective("output_lower", 0),
    ):
        true = _grid_max(pair, obj, -3.0, 3.0)
        thr_hi = true + 0.1 * abs(true) + 1e-9
        r = branch_and_bound(pair, obj, lo, hi, threshold=thr_hi, time_budget_s=5.0, generator=g)
        assert r.status == "proved" and true <= r.upper <= thr_hi
        thr_lo = true - 0.1 * abs(true) - 1e-9
        r = branch_and_bound(pair, obj, lo, hi, threshold=thr_lo, time_budget_s=5.0, generator=g)
        assert r.status == "violated" and r.best_value > thr_lo
        replay = float(obj.value(pair, r.best_x[None])[0])
        assert replay == pytest.approx(r.best_value, rel=1e-12) and replay > thr_lo


def test_tighten_mode_reaches_the_gap():
    g = torch.Generator().manual_seed(7)
    pair = random_pair(g, input_dim=2, width=8, residual=False, scale=0.2)
    lo, hi = -torch.ones(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    obj = Objective("deviation", 0)
    r = branch_and_bound(pair, obj, lo, hi, rel_gap=0.02, time_budget_s=10.0, generator=g)
    assert r.status == "tight" and r.upper <= 1.02 * r.best_value + 1e-12
    axis = torch.linspace(-1, 1, 301, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    assert float(obj.value(pair, grid).max()) <= r.upper
