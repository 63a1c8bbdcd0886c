"""Intervals over tasks (normal) and over seeds (Student t) against hand computations."""

import math

import numpy as np
import pytest
import torch

from metacompose.report.stats import (
    difference,
    over_seeds,
    over_tasks,
    paired_ratio,
    worst_share,
)


def test_over_tasks_matches_numpy():
    v = np.random.default_rng(0).normal(size=50)
    e = over_tasks(torch.tensor(v))
    assert math.isclose(e.mean, v.mean(), rel_tol=1e-12)
    assert math.isclose(e.ci95, 1.96 * v.std(ddof=1) / math.sqrt(50), rel_tol=1e-12)
    assert math.isnan(over_tasks(torch.tensor([1.0])).ci95)


def test_over_seeds_uses_student_t():
    e = over_seeds([0.9, 0.92, 0.94])
    # t_{0.975, 2} = (2p - 1) / sqrt(2p(1 - p)) = 0.95 / sqrt(0.04875); sd = 0.02
    t = 0.95 / math.sqrt(0.04875)
    assert math.isclose(e.ci95, t * 0.02 / math.sqrt(3), rel_tol=1e-12)
    assert math.isclose(e.mean, 0.92) and e.n == 3


def test_difference_adds_in_quadrature():
    a, b = over_seeds([1.0, 3.0]), over_seeds([0.0, 1.0])
    d = difference(a, b)
    assert math.isclose(d.mean, 1.5) and math.isclose(d.ci95, math.hypot(a.ci95, b.ci95))


def test_paired_ratio_matches_a_bootstrap_and_pairing_narrows_it():
    """Per-task errors of two learners on the same tasks share each task's difficulty: the delta
    method's interval matches a bootstrap over tasks (independent reference) and is far narrower
    than the unpaired one."""
    rng = np.random.default_rng(0)
    hard = rng.lognormal(sigma=1.0, size=3000)  # a task's difficulty, shared by both
    a = hard * rng.lognormal(mean=0.1, sigma=0.2, size=3000)
    b = hard * rng.lognormal(sigma=0.2, size=3000)
    e = paired_ratio(a.tolist(), b.tolist())
    assert math.isclose(e.mean, a.mean() / b.mean(), rel_tol=1e-12) and e.n == 3000
    idx = rng.integers(0, 3000, size=(4000, 3000))
    boot = a[idx].mean(1) / b[idx].mean(1)
    assert math.isclose(e.ci95, 1.96 * boot.std(ddof=1), rel_tol=0.08)
    unpaired = e.mean * math.hypot(over_tasks(torch.tensor(a)).ci95 / a.mean(),
                                   over_tasks(torch.tensor(b)).ci95 / b.mean())  # fmt: skip
    assert e.ci95 < unpaired / 3


def test_paired_ratio_edge_cases():
    assert paired_ratio([2.0, 4.0], [1.0, 2.0]).ci95 == 0.0  # a = 2 b on every task
    assert math.isnan(paired_ratio([1.0], [2.0]).ci95) and paired_ratio([1.0], [2.0]).mean == 0.5
    assert paired_ratio([1.0, math.nan], [1.0, 1.0]).diverged
    assert paired_ratio([1.0, 1.0], [0.0, 0.0]).diverged
    with pytest.raises(ValueError, match="differ in length"):
        paired_ratio([1.0], [1.0, 2.0])


def test_worst_share_against_brute_force():
    """The share of A's summed excess over B in its k worst tasks, against sorting by hand; above
    1 when A beats B elsewhere; None when A is not worse on the mean or a value is not finite."""
    rng = np.random.default_rng(3)
    b = rng.uniform(0.01, 0.1, size=40)
    a = b * rng.uniform(0.5, 1.2, size=40)
    a[[4, 17]] += [2.0, 0.7]  # two tasks carry the excess
    d = a - b
    for k in (1, 2, 5, 40, 100):
        by_hand = sum(sorted(d, reverse=True)[: min(k, 40)]) / d.sum()
        assert math.isclose(worst_share(list(a), list(b), k), by_hand, rel_tol=1e-12)
    assert worst_share(list(a), list(b), 2) > 1  # A is better on the other 38 tasks
    assert math.isclose(worst_share(list(a), list(b), 40), 1.0, rel_tol=1e-12)
    assert worst_share(list(b), list(a), 3) is None  # B is not worse than A on the mean
    assert worst_share([1.0, math.nan], [0.5, 0.5], 1) is None
    with pytest.raises(ValueError, match="length"):
        worst_share([1.0], [1.0, 2.0], 1)
    with pytest.raises(ValueError, match="k=0"):
        worst_share([1.0], [0.5], 0)
