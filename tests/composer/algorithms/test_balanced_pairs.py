"""The balanced E-step of the annealed sum (``algo.args.balance_steps``): Sinkhorn's balanced
posterior is the KL projection onto equal use, and at weight 0 the objective's gradient is the plain
soft minimum's."""

import math

import pytest
import torch
from annealed_testing import random_batch
from test_annealed_sum import _learner

from metacompose.algorithms.annealed_sum_builder import annealed_sum_learner
from metacompose.algorithms.balanced_pairs import balanced_posterior, balanced_soft_min
from metacompose.models import mlp_graph


def test_balanced_posterior_is_the_kl_projection_onto_equal_use():
    """Rows sum to 1, every f- and g-candidate gets T/C and T/D, and log(q / p) is additive in
    (task, f, g): the form of the unique KL projection of p onto those constraints (Csiszar)."""
    g = torch.Generator().manual_seed(0)
    t, c, d = 24, 4, 3
    logits = torch.randn(t, c, d, generator=g, dtype=torch.float64) * 3
    q = balanced_posterior(logits, rounds=500)
    torch.testing.assert_close(q.sum((1, 2)), torch.ones(t, dtype=torch.float64))
    torch.testing.assert_close(q.sum((0, 2)), torch.full((c,), t / c, dtype=torch.float64))
    torch.testing.assert_close(q.sum((0, 1)), torch.full((d,), t / d, dtype=torch.float64))
    ratio = (q.log() - logits.flatten(1).log_softmax(1).view(t, c, d)).flatten()
    # least squares on one-hot columns of task, f and g: the residual must vanish (the first f- and
    # g-column dropped: with them the columns are rank-deficient and lstsq's answer is not unique)
    cols = [
        torch.eye(n, dtype=torch.float64)[idx].flatten(0, -2)[:, skip:]
        for n, idx, skip in (
            (t, torch.arange(t)[:, None, None].expand(t, c, d), 0),
            (c, torch.arange(c)[None, :, None].expand(t, c, d), 1),
            (d, torch.arange(d)[None, None, :].expand(t, c, d), 1),
        )
    ]
    a = torch.cat(cols, 1)
    fit = a @ torch.linalg.lstsq(a, ratio[:, None]).solution
    assert float((fit[:, 0] - ratio).abs().max()) < 1e-9


def test_a_merged_batch_is_spread_over_every_candidate():
    """Every task prefers f-candidate 0 a little: the balanced posterior gives each f-candidate a
    quarter of the batch, and a task keeps its own preference order among the g-candidates."""
    t = 16
    logits = torch.zeros(t, 4, 4, dtype=torch.float64)
    logits[:, 0] += 2.0
    logits[torch.arange(t), :, torch.arange(t) % 4] += 5.0
    q = balanced_posterior(logits)
    torch.testing.assert_close(q.sum((0, 2)), torch.full((4,), 4.0, dtype=torch.float64))
    assert bool((q.sum(1).argmax(1) == torch.arange(t) % 4).all())


def test_at_weight_zero_the_gradient_is_the_plain_soft_minimum():
    g = torch.Generator().manual_seed(3)
    c, d, grid, tau = 3, 2, 4, 0.07
    mse = torch.rand(9, c * grid * d * grid + c * d, generator=g, dtype=torch.float64)
    mse.requires_grad_(True)
    plain = -tau * torch.logsumexp(-mse / tau, 1)
    (want,) = torch.autograd.grad(plain.sum(), mse)
    ours = balanced_soft_min(mse, f_count=c, g_count=d, contexts=grid, tau=tau, weight=0.0)
    (got,) = torch.autograd.grad(ours.sum(), mse)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-14)
    # the grid entries of a pair: its rows i*grid..(i+1)*grid, columns j*grid..(j+1)*grid
    full = balanced_soft_min(mse, f_count=c, g_count=d, contexts=grid, tau=tau, weight=1.0)
    assert torch.isfinite(full).all() and not torch.allclose(full, ours)


def test_the_learner_balances_only_while_it_fades_in():
    """With ``balance_steps`` 6, steps 0-5 optimise the balanced objective; from step 6 on the
    objective is the plain learner's, value and gradient."""
    batch = random_batch(8, 6, 4, seed=5)
    plain, balanced = _learner(seed=1), _learner(seed=1)
    balanced.balance_steps = 6
    for step in (6, 9):
        a, b = (m.meta_step(batch, step=step).objective for m in (plain, balanced))
        assert a.item() == b.item()
    a, b = (m.meta_step(batch, step=0).objective for m in (plain, balanced))
    assert not math.isclose(a.item(), b.item(), rel_tol=1e-9)
    b.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in balanced.parameters())


def _train(learner, steps: int = 4) -> list[torch.Tensor]:
    """``steps`` Adam steps on fixed random batches; every parameter afterwards."""
    opt = torch.optim.Adam(learner.parameters(), lr=0.05)
    for step in range(steps):
        opt.zero_grad()
        learner.meta_step(random_batch(8, 6, 4, seed=10 + step), step=step).objective.backward()
        opt.step()
    return [p.detach().clone() for p in learner.parameters()]


def test_mixed_replicas_train_as_the_plain_and_the_balanced_learner_would():
    """``balanced_replicas``: with 2 of 3 replicas balanced, replica 0 ends bit-identical to
    replica 0 of the plain learner and replicas 1-2 to those of the fully balanced one (the same
    start and batches): replicas are independent given the batches, so a mixed run is a plain
    run's and a balanced run's replicas side by side."""
    runs = {}
    for name, start in (("plain", None), ("balanced", 0), ("mixed", 1)):
        learner = _learner(seed=2, replicas=3)
        if start is not None:
            learner.balance_steps, learner.balance_from = 10, start
        runs[name] = _train(learner)
    per = len(runs["plain"]) // 3  # parameters per replica (f-banks, then g-banks, in order)
    assert per * 3 == len(runs["plain"])
    names = [n for n, _ in _learner(replicas=3).named_parameters()]
    for i, name in enumerate(names):
        replica = int(name.split(".")[1])
        want = runs["plain" if replica == 0 else "balanced"][i]
        assert torch.equal(runs["mixed"][i], want), name
        other = runs["balanced" if replica == 0 else "plain"][i]
        assert not torch.equal(runs["mixed"][i], other), name  # the two objectives differ


def test_the_builder_balances_the_last_replicas():
    enc = mlp_graph(hidden=[2])
    kw = {"encoder": enc, "targets": 1, "classification": False, "replicas": 4}
    learner = annealed_sum_learner(**kw, balance_steps=10, balanced_replicas=3)
    assert (learner.balance_steps, learner.balance_from) == (10, 1)
    assert annealed_sum_learner(**kw, balance_steps=10).balance_from == 0
    for bad in (0, 2):
        with pytest.raises(ValueError, match="must be in"):
            annealed_sum_learner(**kw | {"replicas": 1}, balance_steps=10, balanced_replicas=bad)
    with pytest.raises(ValueError, match="needs balance_steps > 0"):
        annealed_sum_learner(**kw, balanced_replicas=2)


@pytest.mark.parametrize(
    "kw", [{"candidates": [8]}, {"structure": "chain"}, {"routing": "descriptor"}]
)
def test_the_builder_balances_only_two_banks_routed_from_data(kw):
    enc = mlp_graph(hidden=[2])
    with pytest.raises(ValueError, match="balances the two banks of the sum routed from data"):
        annealed_sum_learner(encoder=enc, targets=1, classification=False, balance_steps=10, **kw)
    learner = annealed_sum_learner(encoder=enc, targets=1, classification=False, balance_steps=10)
    assert learner.balance_steps == 10


def test_each_pair_reads_its_own_grid_cells_and_refined_fit():
    """The layout against loops over ``pair_fit_mse``'s ``(C G) x (D G)`` order and the refined
    ``C x D`` block (C != D, refined fits included), at a weight where the pairs' posterior
    matters."""
    g = torch.Generator().manual_seed(4)
    t, c, d, grid, tau, w = 5, 2, 3, 2, 0.05, 0.6
    mse = torch.rand(t, c * grid * d * grid + c * d, generator=g, dtype=torch.float64)
    inner = torch.zeros(t, c, d, dtype=torch.float64)
    for i in range(c):
        for j in range(d):
            cols = [
                (i * grid + a) * (d * grid) + j * grid + b for a in range(grid) for b in range(grid)
            ]
            cols.append(c * grid * d * grid + i * d + j)
            inner[:, i, j] = -tau * torch.logsumexp(-mse[:, cols] / tau, 1)
    logits = -inner / tau
    q = (1 - w) * logits.flatten(1).softmax(1).view(t, c, d) + w * balanced_posterior(logits)
    want = (q * inner).sum((1, 2))
    got = balanced_soft_min(mse, f_count=c, g_count=d, contexts=grid, tau=tau, weight=w)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
