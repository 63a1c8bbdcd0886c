"""One 95% interval over tasks for ``evaluate`` and ``report``: the same numbers as the two formulas
each kept before (``evaluate``: rows of a curve, 0 for one task; ``over_tasks``: nan for one task)."""

import math

import torch

from metacompose.report.stats import over_tasks
from metacompose.stats import ci95_over_tasks


def test_matches_the_former_formulas_bit_for_bit():
    curve = torch.randn(11, 37, dtype=torch.float64).exp()
    curve[3, 5] = math.inf
    former_evaluate = 1.96 * curve.std(dim=1, unbiased=True) / math.sqrt(37)
    torch.testing.assert_close(ci95_over_tasks(curve, dim=1), former_evaluate, rtol=0, atol=0,
                               equal_nan=True)  # fmt: skip
    for row in curve[[0, 7]]:
        former_report = 1.96 * float(row.std(unbiased=True)) / math.sqrt(37)
        assert over_tasks(row).ci95 == former_report


def test_fewer_than_two_tasks_have_no_interval():
    assert math.isnan(over_tasks(torch.tensor([1.0])).ci95)
    assert ci95_over_tasks(torch.ones(3, 1), dim=1).isnan().all()
