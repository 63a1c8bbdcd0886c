"""The descriptor-routed helpers against loops over every pair, context and task."""

from __future__ import annotations

import itertools

import pytest
import torch

from metacompose.algorithms.descriptor_pairs import (
    descriptor_pair,
    given_pair_fit,
    true_pair_cells,
    true_pair_rows,
)
from metacompose.algorithms.pair_fit import pair_fit_mse
from metacompose.modules.warp_line import WarpLineBank

C, D, G, T = 3, 2, 4, 5


def _pairs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(C, (T,), generator=gen), torch.randint(D, (T,), generator=gen)


def test_descriptor_pair_reads_both_one_hot_blocks_and_refuses_another_width():
    f, g = _pairs()
    desc = torch.cat([torch.eye(C)[f], torch.eye(D)[g]], 1)
    got = descriptor_pair(desc, f_count=C, g_count=D)
    assert torch.equal(got[0], f) and torch.equal(got[1], g)
    with pytest.raises(ValueError, match=r"width 5.*carry 4"):
        descriptor_pair(desc[:, 1:], f_count=C, g_count=D)
    with pytest.raises(ValueError, match="carry none"):
        descriptor_pair(None, f_count=C, g_count=D)


def test_masks_keep_exactly_each_tasks_true_pair():
    f, g = _pairs()
    rows = true_pair_rows(f, g, f_count=C, g_count=D, contexts=G)
    cells = true_pair_cells(f, g, f_count=C, g_count=D)
    assert rows.shape == (C * G * D * G, T) and cells.shape == (C * D, T)
    for t in range(T):  # row index of (c, i, d, j) in a flattened (C G, D G)
        want = {
            ((c * G + i) * D + d) * G + j
            for c, i, d, j in itertools.product(range(C), range(G), range(D), range(G))
            if c == f[t] and d == g[t]
        }
        assert set(rows[:, t].nonzero()[:, 0].tolist()) == want
        assert cells[:, t].nonzero()[:, 0].tolist() == [int(f[t]) * D + int(g[t])]


def test_given_pair_fit_is_the_true_pairs_rows_of_the_full_sum_fit():
    torch.manual_seed(1)
    fb = WarpLineBank(count=C, knots=10, contexts=G).double()
    gb = WarpLineBank(count=D, knots=10, contexts=G).double()
    x = torch.rand(T, 7, dtype=torch.float64) * 2 - 1
    y = torch.randn(T, 7, dtype=torch.float64)
    grid = torch.linspace(-1, 1, G, dtype=torch.float64)
    f, g = _pairs()
    mse, amp = given_pair_fit(fb, gb, x, y, grid, [f, g], chain=False, ridge=1e-3)
    hf, hg = fb.on_grid(x, grid).flatten(0, 1), gb.on_grid(x, grid).flatten(0, 1)
    full = pair_fit_mse(hf, hg, y, ridge=1e-3, amplitudes=True)
    rows = true_pair_rows(f, g, f_count=C, g_count=D, contexts=G)
    for got, ref in zip((mse, amp), full, strict=True):
        want = ref.flatten(0, 1).T[rows.T].view(T, G * G).T
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
