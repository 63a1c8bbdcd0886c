import pytest
import torch

from metacompose.symbolic.exact_tier import exact_check
from metacompose.symbolic.objectives import Objective
from metacompose.symbolic.results import Proved, Unknown, Violated
from metacompose.symbolic.self_test import random_pair


@pytest.mark.parametrize("seed", range(5))
def test_exact_tier_agrees_with_dense_grid_on_1d(seed):
    g = torch.Generator().manual_seed(seed)
    pair = random_pair(g, input_dim=1, width=6, residual=seed % 2 == 0, scale=0.2)
    lo, hi = torch.tensor([[-2.0]], dtype=torch.float64), torch.tensor([[2.0]], dtype=torch.float64)
    x = torch.linspace(-2, 2, 40001, dtype=torch.float64)[:, None]
    for obj in (Objective("deviation", 0), Objective("output_upper", 0)):
        with torch.no_grad():
            grid = float(obj.value(pair, x).max())
        res = exact_check(pair, obj, grid + 0.02 * abs(grid) + 1e-9, lo, hi, timeout_s=30)
        assert isinstance(res, Proved)
        res = exact_check(pair, obj, grid - 0.02 * abs(grid) - 1e-9, lo, hi, timeout_s=30)
        assert isinstance(res, Violated)
        xs = res.counterexample.x
        assert -2 <= float(xs) <= 2 and float(obj.value(pair, xs[None])[0]) == res.observed


def test_timeout_is_unknown_never_proved():
    g = torch.Generator().manual_seed(0)
    pair = random_pair(g, input_dim=2, width=8, residual=False, scale=0.3)
    lo, hi = -torch.ones(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    res = exact_check(pair, Objective("deviation", 0), 1e-9, lo, hi, timeout_s=1e-6)
    assert isinstance(res, Unknown | Violated)
    assert not isinstance(res, Proved)
