"""The sum-structure EM learner against brute force: every pair and context pair fitted by a
float64 least-squares solve in a loop, the routing by exhaustive enumeration."""

from __future__ import annotations

import itertools

import pytest
import torch

from metacompose.router.candidate_bank import ContextBank
from metacompose.router.sum_em import SumEMLearner, build_sum_em, train_sum_em
from metacompose.tasks.compositional import CompositionalFamily


def _family(descriptor: str = "none") -> CompositionalFamily:
    return CompositionalFamily(
        structure="sum", inner=["ramp", "step"], outer=["sine", "bump"],
        held_out=[["ramp", "bump"]], check={"min_distinct": 0.0}, descriptor=descriptor,
    )  # fmt: skip


def _learner(routing: str = "em", contexts: int = 3) -> SumEMLearner:
    g = torch.Generator().manual_seed(0)
    banks = [ContextBank(candidates=2, hidden=5, context_scale=2.0, generator=g) for _ in "fg"]
    learner = SumEMLearner(
        f_bank=banks[0], g_bank=banks[1], contexts=contexts, ridge=0.5, routing=routing
    )
    return learner.double()


@torch.no_grad()
def _mlp(bank: ContextBank, c: int, x: torch.Tensor, p: float) -> torch.Tensor:
    """One candidate by hand, point by point."""
    out = []
    for xi in x.tolist():
        u = torch.tensor([xi, bank.context_scale * p], dtype=torch.float64)
        h = torch.tanh(u @ bank.w1[c] + bank.b1[c])
        h = torch.tanh(h @ bank.w2[c] + bank.b2[c])
        out.append(h @ bank.w3[c] + bank.b3[c])
    return torch.stack(out)


def _fit(hf, hg, y, ridge):
    design = torch.stack([hf, hg, torch.ones_like(hf)], dim=1)
    aug = torch.cat([design, ridge**0.5 * torch.eye(3, dtype=torch.float64)])
    target = torch.cat([y, torch.zeros(3, dtype=torch.float64)])
    return torch.linalg.lstsq(aug, target[:, None]).solution[:, 0]


def test_bank_on_grid_and_chosen_match_a_hand_written_mlp():
    learner = _learner()
    x = torch.linspace(-3, 3, 4, dtype=torch.float64).expand(2, -1)
    grid = learner.grid
    on_grid = learner.f_bank.on_grid(x, grid)
    for c, k in itertools.product(range(2), range(len(grid))):
        want = _mlp(learner.f_bank, c, x[0], float(grid[k]))
        torch.testing.assert_close(on_grid[c, k, 1], want, atol=1e-12, rtol=1e-12)
    cand, ctx = torch.tensor([1, 0]), torch.tensor([0.3, -0.7], dtype=torch.float64)
    got = learner.f_bank.chosen(cand, ctx, x)
    for t in range(2):
        want = _mlp(learner.f_bank, int(cand[t]), x[t], float(ctx[t]))
        torch.testing.assert_close(got[t], want, atol=1e-12, rtol=1e-12)


def _batch(seed: int = 1, descriptor: str = "none"):
    b = _family(descriptor).sample(
        3, shots=6, query=5, generator=torch.Generator().manual_seed(seed)
    )
    for key in ("support_x", "support_y", "query_x", "query_y"):
        setattr(b, key, getattr(b, key).double())
    return b


def test_pair_losses_match_a_solve_per_pair_and_context_pair():
    learner, b = _learner(), _batch()
    query, support, kf, kg = learner.pair_losses(b)
    grid = learner.grid.tolist()
    for i, j, t in itertools.product(range(2), range(2), range(3)):
        sx, sy = b.support_x[t, :, 0], b.support_y[t, :, 0]
        qx, qy = b.query_x[t, :, 0], b.query_y[t, :, 0]
        best = None
        for kk, ll in itertools.product(range(len(grid)), repeat=2):
            hf, hg = _mlp(learner.f_bank, i, sx, grid[kk]), _mlp(learner.g_bank, j, sx, grid[ll])
            w = _fit(hf, hg, sy, 0.5)
            loss = float(((w[0] * hf + w[1] * hg + w[2] - sy) ** 2).mean())
            if best is None or loss < best[0]:
                best = (loss, kk, ll, w)
        loss, kk, ll, w = best
        assert (int(kf[i, j, t]), int(kg[i, j, t])) == (kk, ll)
        assert float(support[i, j, t]) == pytest.approx(loss, abs=1e-10)
        pred = (
            w[0] * _mlp(learner.f_bank, i, qx, grid[kk])
            + w[1] * _mlp(learner.g_bank, j, qx, grid[ll])
            + w[2]
        )
        assert float(query[i, j, t]) == pytest.approx(float(((pred - qy) ** 2).mean()), abs=1e-10)


def test_choice_is_the_exhaustive_minimum_and_the_descriptor_is_obeyed():
    learner, b = _learner(), _batch()
    query, support, _, _ = learner.pair_losses(b)
    for training, table in ((False, support), (True, query)):
        choice = learner.choose(b, training=training)
        for t in range(3):
            cells = {(i, j): float(table[i, j, t]) for i in range(2) for j in range(2)}
            assert (int(choice.f[t]), int(choice.g[t])) == min(cells, key=cells.get)
    desc = _learner(routing="descriptor")
    b = _batch(descriptor="onehot")
    choice = desc.choose(b, training=True)
    assert choice.f.tolist() == b.info["f"].tolist()
    assert choice.g.tolist() == b.info["g"].tolist()


def test_query_mse_of_a_choice_is_the_pair_losses_entry():
    learner, b = _learner(), _batch()
    query, _, _, _ = learner.pair_losses(b)
    choice = learner.choose(b, training=False)
    got = learner.query_mse(b, choice)
    want = query[choice.f, choice.g, torch.arange(3)]
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-9)


def test_training_moves_both_banks_and_bad_settings_fail_in_one_line():
    learner = build_sum_em(candidates=2, hidden=4, contexts=3, ridge=1.0, routing="em", seed=0)
    before = [p.detach().clone() for p in learner.parameters()]
    losses = train_sum_em(learner, _family(), steps=3, meta_batch=4, lr=1e-2, seed=0)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert all(not torch.equal(a, p) for a, p in zip(before, learner.parameters()))
    with pytest.raises(ValueError, match="routing em\\|descriptor"):
        build_sum_em(candidates=2, hidden=4, contexts=3, ridge=1.0, routing="soft", seed=0)
