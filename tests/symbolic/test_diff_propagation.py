import pytest
import torch

from metacompose.symbolic.diff_propagation import output_bounds, propagate_pair
from metacompose.symbolic.network import INPUT
from metacompose.symbolic.self_test import random_pair


@pytest.mark.parametrize("seed", range(12))
def test_bounds_contain_every_sampled_value(seed):
    g = torch.Generator().manual_seed(seed)
    n = 1 + seed % 3
    pair = random_pair(g, input_dim=n, width=6 + seed % 4, residual=seed % 2 == 1, scale=0.2)
    lo = torch.rand(3, n, generator=g, dtype=torch.float64) * 2 - 2
    hi = lo + torch.rand(3, n, generator=g, dtype=torch.float64) * 3
    bounds = propagate_pair(pair, lo, hi)
    u = torch.rand(3, 500, n, generator=g, dtype=torch.float64)
    x = lo[:, None] + u * (hi - lo)[:, None]
    for b in range(3):
        v1 = pair.meta.forward_all(x[b])
        v2 = pair.adapted.forward_all(x[b])
        for name in [INPUT, *pair.meta.order]:
            pb = bounds[name]
            for lb, val in (
                (pb.meta, v1[name]),
                (pb.adapted, v2[name]),
                (pb.diff, v2[name] - v1[name]),
            ):
                assert bool((val >= lb.lo[b]).all()) and bool((val <= lb.hi[b]).all()), name
                # the linear bounds hold pointwise too
                low = torch.einsum("mn,sn->sm", lb.al[b], x[b]) + lb.cl[b]
                up = torch.einsum("mn,sn->sm", lb.au[b], x[b]) + lb.cu[b]
                assert bool((val >= low - 1e-9).all()) and bool((val <= up + 1e-9).all()), name


def test_difference_propagation_is_much_tighter_than_separate_bounds():
    ratios = []
    for seed in range(10):
        g = torch.Generator().manual_seed(100 + seed)
        pair = random_pair(g, input_dim=1, width=16, residual=False, scale=0.01)
        lo, hi = (
            torch.tensor([[-1.0]], dtype=torch.float64),
            torch.tensor([[1.0]], dtype=torch.float64),
        )
        ob = output_bounds(pair, lo, hi)
        joint = float(torch.maximum(ob.diff.hi, -ob.diff.lo).max())
        separate = float(
            torch.maximum(ob.adapted.hi - ob.meta.lo, ob.meta.hi - ob.adapted.lo).max()
        )
        ratios.append(separate / joint)
    assert min(ratios) > 2.0 and sorted(ratios)[5] > 5.0
