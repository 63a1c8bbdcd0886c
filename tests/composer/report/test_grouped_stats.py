"""Group-level intervals, paired differences and verdicts against hand computations."""

import math

import pytest
import torch

from metacompose.report.grouped_stats import (
    GroupEstimate,
    group_means,
    grouped_table,
    over_groups,
    paired_over_groups,
    verdict,
)

T_975_DF2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)


def test_over_groups_matches_a_hand_computation():
    # group 0: tasks 1, 3 (mean 2); group 5: 4 (mean 4); group 2: 6, 6, 9 (mean 7)
    values = torch.tensor([1.0, 4.0, 6.0, 3.0, 6.0, 9.0])
    groups = torch.tensor([0, 5, 2, 0, 2, 2])
    torch.testing.assert_close(group_means(values, groups), torch.tensor([2.0, 7.0, 4.0]).double())
    e = over_groups(values, groups)
    mean = (2 + 7 + 4) / 3
    sd = math.sqrt(((2 - mean) ** 2 + (7 - mean) ** 2 + (4 - mean) ** 2) / 2)
    assert e.n_groups == 3 and e.n_tasks == 6
    assert e.mean == pytest.approx(mean, rel=1e-12)
    assert e.ci95 == pytest.approx(T_975_DF2 * sd / math.sqrt(3), rel=1e-9)


def test_group_interval_is_wider_than_the_naive_task_interval_under_clustering():
    g = torch.Generator().manual_seed(0)
    groups = torch.arange(8).repeat_interleave(50)
    values = torch.randn(8, generator=g)[groups] + 0.1 * torch.randn(400, generator=g)
    naive = 1.96 * values.std() / 20
    assert over_groups(values, groups).ci95 > 3 * float(naive)


def test_paired_difference_is_over_per_group_mean_differences():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    b = torch.tensor([0.5, 1.0, 3.5, 3.0])
    groups = torch.tensor([0, 0, 1, 1])
    d = paired_over_groups(a, b, groups)  # group differences 0.75, 0.25
    assert d.mean == pytest.approx(0.5)
    assert d.ci95 == pytest.approx(12.706204736174696 * math.sqrt(0.125) / math.sqrt(2), rel=1e-9)


def test_one_group_has_no_interval_and_ties():
    e = over_groups(torch.tensor([1.0, 2.0]), torch.tensor([3, 3]))
    assert e.n_groups == 1 and math.isnan(e.ci95)
    assert verdict(e, "mse") == "tie"


@pytest.mark.parametrize(
    ("mean", "ci", "metric", "expected"),
    [
        (-0.2, 0.1, "mse", "win"),  # method lower error, interval below zero
        (0.2, 0.1, "mse", "loss"),
        (-0.05, 0.1, "mse", "tie"),
        (0.2, 0.1, "accuracy", "win"),  # higher accuracy
        (-0.2, 0.1, "accuracy", "loss"),
        (0.05, 0.1, "accuracy", "tie"),
        (-0.1, 0.1, "mse", "tie"),  # touching zero is not a win
        (math.nan, math.nan, "mse", "diverged"),
    ],
)
def test_verdict(mean, ci, metric, expected):
    assert verdict(GroupEstimate(mean=mean, ci95=ci, n_groups=5, n_tasks=50), metric) == expected


def test_verdict_rejects_unknown_metric():
    with pytest.raises(ValueError, match="metric"):
        verdict(GroupEstimate(0.0, 1.0, 3, 3), "r2")


def test_grouped_table_rows():
    curve = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]])
    text = grouped_table(curve, torch.tensor([0, 0, 1, 1]), "mse").splitlines()
    assert "t over 2 groups" in text[0] and len(text) == 3
    assert text[2].split()[:3] == ["1", "0.5000", "0.0000"]
