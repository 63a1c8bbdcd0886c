"""The cross-fitted term of the annealed sum (chosen on support, scored on query) against one
float64 least-squares solve per pair and task, and a brute-force posterior sum."""

from __future__ import annotations

import itertools

import pytest
import torch

from metacompose.algorithms.annealed_sum_builder import annealed_sum_learner
from metacompose.algorithms.cross_fit import cross_fit_banks, cross_fit_term, support_query_mse
from metacompose.models import mlp_graph
from metacompose.tasks.base import TaskBatch


def _reference(f, g, y, k, ridge):
    """Per (pair, task): amplitudes from one float64 solve on the first k points (the ridge on a
    and b as two extra rows), then the mean squared residual on the first k and on the rest."""
    a, b, t = f.shape[0], g.shape[0], y.shape[0]
    s, q, amp = (torch.empty(a, b, t, dtype=torch.float64) for _ in range(3))
    pen = torch.tensor([[ridge**0.5, 0.0, 0.0], [0.0, ridge**0.5, 0.0]], dtype=torch.float64)
    for i, j, n in itertools.product(range(a), range(b), range(t)):
        cols = torch.stack([f[i, n], g[j, n], torch.ones(y.shape[1], dtype=torch.float64)], 1)
        design = torch.cat([cols[:k], pen])
        target = torch.cat([y[n, :k], torch.zeros(2, dtype=torch.float64)])
        w = torch.linalg.lstsq(design, target[:, None]).solution[:, 0]
        r = cols @ w - y[n]
        s[i, j, n], q[i, j, n] = r[:k].pow(2).mean(), r[k:].pow(2).mean()
        amp[i, j, n] = w[:2].abs().max()
    return s, q, amp


@pytest.mark.parametrize(("k", "ridge"), [(5, 1e-4), (3, 0.5), (8, 1e-4)])
def test_support_and_query_mse_equal_one_solve_per_pair(k, ridge):
    gen = torch.Generator().manual_seed(11)
    f, g = (torch.randn(n, 4, 12, generator=gen, dtype=torch.float64) for n in (3, 2))
    y = torch.randn(4, 12, generator=gen, dtype=torch.float64) * 2 + 1
    got = support_query_mse(f, g, y, support=k, ridge=ridge)
    for mine, ref in zip(got, _reference(f, g, y, k, ridge), strict=True):
        torch.testing.assert_close(mine, ref, rtol=1e-8, atol=1e-10)


def test_a_true_pair_predicts_its_queries_exactly():
    """y = 2 f_1 - 3 g_0 + 0.5 exactly: that pair fits the support points and predicts the query
    points (to the ridge's bias); a wrong pair predicts the queries worse."""
    gen = torch.Generator().manual_seed(2)
    f, g = (torch.randn(n, 3, 15, generator=gen, dtype=torch.float64) for n in (2, 2))
    y = 2 * f[1] - 3 * g[0] + 0.5
    s, q, amp = support_query_mse(f, g, y, support=6, ridge=1e-10)
    assert s[1, 0].max() < 1e-12 and q[1, 0].max() < 1e-12
    torch.testing.assert_close(amp[1, 0], torch.full((3,), 3.0, dtype=torch.float64))
    assert q[0, 1].min() > 1e-3


def test_term_is_the_support_posterior_expectation_of_the_query_error():
    gen = torch.Generator().manual_seed(5)
    f, g = (torch.randn(n, 6, 10, generator=gen, dtype=torch.float64) for n in (3, 4))
    y = torch.randn(6, 10, generator=gen, dtype=torch.float64)
    s, q, _ = _reference(f, g, y, 5, 1e-4)
    for tau in (1.0, 0.05):
        want = torch.empty(6, dtype=torch.float64)
        for n in range(6):
            w = torch.exp(-(s[..., n] - s[..., n].min()) / tau)
            top = 4.0 * y[n, 5:].var(unbiased=False)
            want[n] = (w * q[..., n].clamp(max=top)).sum() / w.sum()
        got = cross_fit_term(f, g, y, support=5, tau=tau, ridge=1e-4, limit=float("inf"))
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_limit_takes_the_share_of_wild_fits_unless_none_is_admissible():
    gen = torch.Generator().manual_seed(7)
    f, g = (torch.randn(n, 5, 10, generator=gen, dtype=torch.float64) for n in (3, 3))
    y = torch.randn(5, 10, generator=gen, dtype=torch.float64)
    s, q, amp = _reference(f, g, y, 4, 1e-4)
    # between two amplitudes, not at one: a limit equal to a fit's amplitude admits it or not by
    # its last bit, which a multithreaded float64 reduction may set either way (seen under load)
    ranked = amp.flatten().sort().values
    limit = float((ranked[len(ranked) // 2] + ranked[len(ranked) // 2 + 1]) / 2)
    got = cross_fit_term(f, g, y, support=4, tau=0.01, ridge=1e-4, limit=limit, cap=1e9)
    for n in range(5):
        ok = amp[..., n] <= limit
        w = torch.exp(-(s[..., n] - s[..., n][ok].min()) / 0.01) * ok
        torch.testing.assert_close(got[n], (w * q[..., n]).sum() / w.sum(), rtol=1e-8, atol=1e-12)
    none = cross_fit_term(f, g, y, support=4, tau=0.01, ridge=1e-4, limit=-1.0, cap=1e9)
    every = cross_fit_term(f, g, y, support=4, tau=0.01, ridge=1e-4, limit=float("inf"), cap=1e9)
    torch.testing.assert_close(none, every)


def test_support_must_leave_query_points():
    f = torch.zeros(1, 1, 4)
    with pytest.raises(ValueError, match="support=4: must leave query points"):
        support_query_mse(f, f, torch.zeros(1, 4), support=4)


def _learner(**args):
    encoder = mlp_graph(in_features=1, hidden=[4], out_features=1)
    return annealed_sum_learner(
        encoder=encoder, targets=1, classification=False, knots=24, span=6.5, contexts=5,
        replicas=2, **args,
    )  # fmt: skip


def test_meta_step_adds_the_weighted_term_of_every_replica():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 9, 1, generator=gen) * 6 - 3
    y = torch.sin(x) + 0.3 * x
    batch = TaskBatch(support_x=x[:, :4], support_y=y[:, :4], query_x=x[:, 4:], query_y=y[:, 4:])
    torch.manual_seed(1)
    plain = _learner()
    torch.manual_seed(1)
    crossed = _learner(cross_fit=0.5)
    base = plain.meta_step(batch, step=0).objective
    total = crossed.meta_step(batch, step=0).objective
    xs, ys = x[..., 0], y[..., 0]
    extra = sum(
        cross_fit_banks(fb, gb, xs, ys, support=4, tau=plain.tau(0), ridge=plain.ridge,
                        limit=float("nan")).mean()
        for fb, gb in zip(crossed.f_banks, crossed.g_banks, strict=True)
    )  # fmt: skip
    torch.testing.assert_close(total, base + 0.5 * extra)
    total.backward()  # the term is differentiable in every table
    assert all(b.table.grad is not None and b.table.grad.abs().sum() > 0 for b in crossed.f_banks)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"cross_fit": -0.1}, "cross_fit=-0.1: must be finite and >= 0"),
        ({"cross_fit": float("nan")}, "cross_fit=nan: must be finite and >= 0"),
        ({"cross_fit": 1.0, "structure": "chain", "init": "identity"}, "only for the sum"),
        ({"cross_fit": 1.0, "candidates": [4]}, "only for the sum with two banks"),
        ({"cross_fit": 1.0, "routing": "descriptor"}, "routed from data"),
    ],
)
def test_builder_refuses(args, named):
    with pytest.raises(ValueError, match=named):
        _learner(**args)
