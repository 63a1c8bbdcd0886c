"""Intervals over tasks (normal) and over seeds (Student t) against hand computations."""

import math

import numpy as np
import torch

from metacompose.report.stats import difference, over_seeds, over_tasks


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
