"""The descriptor-routed helpers against loops over every pair, context and task, and the
given pair's refined contexts against the refinement of every pair."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from metacompose.algorithms.context_refine import best_on_grid, refine_contexts
from metacompose.algorithms.descriptor_pairs import (
    descriptor_pair,
    given_pair_fit,
    given_pair_refined,
    true_pair_cells,
    true_pair_rows,
)
from metacompose.algorithms.pair_fit import matched_fit_mse, pair_fit_mse
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


def _banks_and_points(seed: int):
    torch.manual_seed(seed)
    fb = WarpLineBank(count=C, knots=12, span=3.0, contexts=G, spread=1.0).double()
    gb = WarpLineBank(count=D, knots=12, span=3.0, contexts=G, spread=1.0).double()
    gen = torch.Generator().manual_seed(seed + 100)
    x = torch.rand(T, 9, generator=gen, dtype=torch.float64) * 6 - 3
    return fb, gb, x, torch.randn(T, 9, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_given_pair_refined_is_that_pairs_entry_of_every_pairs_refinement(seed):
    """Reference: every pair refined at once (as data routing does), then each task's pair read
    out; searching the given pair alone must land on the same contexts."""
    fb, gb, x, y = _banks_and_points(seed)
    grid = torch.linspace(-1, 1, G, dtype=torch.float64)
    f, g = _pairs()
    hf, hg = fb.on_grid(x, grid).flatten(0, 1), gb.on_grid(x, grid).flatten(0, 1)
    cf, cg = best_on_grid(pair_fit_mse(hf, hg, y, ridge=1e-6), grid)  # (C, D, T)

    def read(a, b):
        xs = x.view(x.shape[0], *[1] * (a.dim() - 3), x.shape[1])
        return fb.read_at(xs, a), gb.read_at(xs, b.transpose(0, 1)).transpose(0, 1)

    cf, cg = refine_contexts(read, y, cf, cg, step=2 / (G - 1), rounds=3, ridge=1e-6)
    t = torch.arange(T)
    got = given_pair_refined(fb, gb, x, y, grid, [f, g], rounds=3, ridge=1e-6)
    torch.testing.assert_close(got[0], cf[f, g, t], rtol=0, atol=1e-12)
    torch.testing.assert_close(got[1], cg[f, g, t], rtol=0, atol=1e-12)
    assert (got[0] != grid[:, None]).all(0).any()  # it did move off the grid


@torch.no_grad()
def test_given_pair_refined_keeps_within_the_amplitude_limit_or_takes_the_best_when_none_is():
    fb, gb, x, y = _banks_and_points(3)
    grid = torch.linspace(-1, 1, G, dtype=torch.float64)
    f, g = _pairs()
    t = torch.arange(T)
    grid_mse, amp = given_pair_fit(fb, gb, x, y, grid, [f, g], chain=False, ridge=1e-6)
    limit = float(amp.min(0).values.median())  # some tasks have an admissible fit, some none
    cf, cg = given_pair_refined(fb, gb, x, y, grid, [f, g], rounds=2, ridge=1e-6, limit=limit)
    mse, got_amp = matched_fit_mse(fb.read_at(x, cf.expand(C, T))[f, t],
                                   gb.read_at(x, cg.expand(D, T))[g, t], y, ridge=1e-6)  # fmt: skip
    some = (amp <= limit).any(0)
    assert some.any() and (~some).any()
    assert (got_amp[some] <= limit).all()
    best_admissible = torch.where(amp <= limit, grid_mse, math.inf).min(0).values
    assert (mse[some] <= best_admissible[some] + 1e-12).all()  # never worse than its grid start
    unlimited = given_pair_refined(fb, gb, x, y, grid, [f, g], rounds=2, ridge=1e-6)
    torch.testing.assert_close(cf[~some], unlimited[0][~some], rtol=0, atol=0)
    torch.testing.assert_close(cg[~some], unlimited[1][~some], rtol=0, atol=0)
