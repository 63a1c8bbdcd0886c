"""WarpLineBank against an independent float64 reference (numpy's piecewise-linear interpolation,
held constant outside the table), and its exact ReLU-network form."""

import itertools

import numpy as np
import pytest
import torch

from metacompose.modules.warp_line import MAX_SLOPE_CHANGE, WarpLineBank


def _bank(seed: int = 0, **kw) -> WarpLineBank:
    torch.manual_seed(seed)
    bank = WarpLineBank(count=3, knots=12, span=4.0, contexts=5, **kw).double()
    with torch.no_grad():  # slopes past the clamp on purpose
        bank.slope.copy_(torch.tensor([0.3, -0.9, 1.4], dtype=torch.float64))
    return bank


def _reference(bank: WarpLineBank, k: int, c: float, x: np.ndarray) -> np.ndarray:
    s = float(np.clip(bank.slope[k].item(), -MAX_SLOPE_CHANGE, MAX_SLOPE_CHANGE))
    u = (1 + s * c) * x + bank.shift[k].item() * c
    knots = np.linspace(-4.0, 4.0, 12)
    return np.interp(u, knots, bank.table[k].detach().numpy())  # constant outside the knots


def test_on_grid_matches_piecewise_linear_interpolation():
    bank = _bank()
    x = torch.linspace(-7.0, 7.0, 101, dtype=torch.float64)
    grid = torch.tensor([-1.0, -0.3, 0.0, 0.8], dtype=torch.float64)
    out = bank.on_grid(x, grid)
    assert out.shape == (3, 4, 101)
    for k in range(3):
        for i, c in enumerate(grid.tolist()):
            want = _reference(bank, k, c, x.numpy())
            np.testing.assert_allclose(out[k, i].detach().numpy(), want, rtol=0, atol=1e-12)


def test_forward_is_every_candidate_at_the_own_grid_candidate_major():
    bank = _bank()
    x = torch.linspace(-2.0, 2.0, 7, dtype=torch.float64)[:, None]
    out = bank(x)
    assert out.shape == (7, 15)
    want = bank.on_grid(x[:, 0], torch.linspace(-1, 1, 5, dtype=torch.float64))
    torch.testing.assert_close(out, want.flatten(0, 1).T)


def test_chosen_reads_one_candidate_and_context_per_task():
    bank = _bank()
    x = torch.randn(4, 9, dtype=torch.float64) * 3
    k = torch.tensor([2, 0, 1, 2])
    c = torch.tensor([0.5, -1.0, 0.25, 0.0], dtype=torch.float64)
    out = bank.chosen(x, k, c)
    for t in range(4):
        want = _reference(bank, int(k[t]), float(c[t]), x[t].numpy())
        np.testing.assert_allclose(out[t].detach().numpy(), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k, c", [(0, 0.0), (1, -1.0), (2, 0.7), (1, 0.35)])
def test_relu_block_equals_the_candidate_everywhere(k, c):
    bank = _bank(seed=3)
    x = torch.linspace(-12.0, 12.0, 2001, dtype=torch.float64)
    block = bank.as_relu_block(k, c)
    assert block.spec()["activation"] == "relu" and block.spec()["hidden"] == [12]
    got = block(x[:, None])[:, 0].detach().numpy()
    np.testing.assert_allclose(got, _reference(bank, k, c, x.numpy()), rtol=0, atol=1e-11)


def test_spread_zero_starts_every_candidate_alike_and_spec_rebuilds():
    torch.manual_seed(0)
    bank = WarpLineBank(count=4, knots=8, spread=0.0)
    assert torch.equal(bank.table[0], bank.table[3]) and torch.equal(bank.shift[1], bank.shift[2])
    torch.manual_seed(0)
    apart = WarpLineBank(count=4, knots=8, spread=1.0)
    assert not torch.equal(apart.table[0], apart.table[3])
    again = WarpLineBank(**bank.spec())
    assert again.spec() == bank.spec() and again.out_space.dim == 4 * 15


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"knots": 1}, "knots=1: must be >= 2"),
        ({"count": 0}, "count must be >= 1"),
        ({"spread": 1.5}, "spread=1.5: must be in"),
        ({"span": 0.0}, "span=0.0: must be in"),
        ({"init": "zeros"}, "init=zeros: expected one of random, identity"),
    ],
)
def test_bad_arguments_say_which(kw, match):
    args = {"count": 2, "knots": 4} | kw
    with pytest.raises(ValueError, match=match):
        WarpLineBank(**args)


def test_bounded_shift_and_stretch_stay_within_their_bounds_and_keep_the_relu_form():
    torch.manual_seed(1)
    bank = WarpLineBank(count=3, knots=12, span=4.0, max_stretch=0.3, max_shift=0.5).double()
    with torch.no_grad():
        bank.shift.copy_(torch.tensor([5.0, -0.2, -40.0], dtype=torch.float64))
        bank.slope.copy_(torch.tensor([0.9, -0.1, -2.0], dtype=torch.float64))
    t, s = bank.offset().detach(), bank.stretch().detach()
    assert (t.abs() <= 0.5).all() and t[0] > 0.49 and t[2] < -0.49
    torch.testing.assert_close(t[1], 0.5 * torch.tanh(torch.tensor(-0.4, dtype=torch.float64)))
    assert s.tolist() == [0.3, -0.1, -0.3]
    x = torch.linspace(-6.0, 6.0, 301, dtype=torch.float64)
    for k in range(3):
        u = (1 + s[k] * 0.8) * x + t[k] * 0.8
        want = np.interp(u.numpy(), np.linspace(-4, 4, 12), bank.table[k].detach().numpy())
        got = bank.chosen(x[None], torch.tensor([k]), torch.tensor([0.8], dtype=torch.float64))
        np.testing.assert_allclose(got[0].detach().numpy(), want, rtol=0, atol=1e-12)
        block = bank.as_relu_block(k, 0.8)
        np.testing.assert_allclose(block(x[:, None])[:, 0].detach().numpy(), want, atol=1e-11)
    with pytest.raises(ValueError, match=r"max_shift=5\.0: must be in"):
        WarpLineBank(count=2, span=4.0, max_shift=5.0)
    with pytest.raises(ValueError, match=r"max_stretch=1\.0: must be in"):
        WarpLineBank(count=2, max_stretch=1.0)


def test_identity_init_is_the_line_plus_a_smooth_curve_through_eight_values():
    """``init="identity"``: each table is ``u`` at its knots plus a curve linear between 8 evenly
    spaced random values (so its second differences vanish but at 6 interior breaks)."""
    torch.manual_seed(0)
    bank = WarpLineBank(count=3, knots=43, span=3.0, init="identity")
    line = torch.linspace(-3.0, 3.0, 43)
    bump = bank.table.detach() - line
    assert bump.abs().max() < 2.0 and bump.abs().max() > 0
    bent = (bump[:, 2:] - 2 * bump[:, 1:-1] + bump[:, :-2]).abs() > 1e-5
    assert int(bent.sum(1).max()) <= 6
    assert WarpLineBank(**bank.spec()).spec()["init"] == "identity"


def test_read_at_reads_each_candidate_at_its_own_contexts():
    bank = _bank()
    x = torch.randn(4, 9, dtype=torch.float64) * 3
    c = torch.rand(3, 2, 4, dtype=torch.float64) * 2 - 1  # (count, B, T)
    out = bank.read_at(x, c)  # x (T, N) broadcasts with (B, T, N)
    assert out.shape == (3, 2, 4, 9)
    for k, b, t in itertools.product(range(3), range(2), range(4)):
        want = _reference(bank, k, float(c[k, b, t]), x[t].numpy())
        np.testing.assert_allclose(out[k, b, t].detach().numpy(), want, rtol=0, atol=1e-12)


def test_read_rows_reads_each_listed_candidate_at_its_contexts_repeats_included():
    bank = _bank(2)
    x = torch.randn(4, 7, dtype=torch.float64) * 3
    rows = torch.tensor([2, 0, 2, 1, 0])  # candidates may repeat (the pairs of one shared bank)
    c = torch.rand(5, 4, 3, dtype=torch.float64) * 2 - 1  # (P, T, trials)
    out = bank.read_rows(x[:, None, :], rows, c)  # x (T, 1, N) broadcasts with (T, trials, N)
    assert out.shape == (5, 4, 3, 7)
    for p, t, j in itertools.product(range(5), range(4), range(3)):
        want = _reference(bank, int(rows[p]), float(c[p, t, j]), x[t].numpy())
        np.testing.assert_allclose(out[p, t, j].detach().numpy(), want, rtol=0, atol=1e-12)
