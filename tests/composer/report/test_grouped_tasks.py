"""The groups re-drawn for a seeded stream are those of the tasks actually evaluated."""

import pytest
import torch

from metacompose.evaluate import evaluate_tasks
from metacompose.report.curves import metric_curves
from metacompose.report.grouped_tasks import curve_task_groups, eval_task_groups
from metacompose.tasks import SinusoidFamily
from metacompose.tasks.grouped import GroupedRegressionFamily


class GroupEcho(torch.nn.Module):
    """A learner whose metric of a task is its group index: the target of every row is the id
    of its group, so the first support target (back in data units) names the group."""

    def __init__(self, family):
        super().__init__()
        self.family = family
        self.index = {float(k): i for i, k in enumerate(family.group_keys)}

    def evaluate(self, batch, *, steps=None):
        ids = self.family.denormalise_y(batch.support_y[:, 0, 0].double()).round()
        group = torch.tensor([self.index[float(v)] for v in ids], dtype=torch.float64)
        return group.expand((steps or 0) + 1, -1)


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    path = tmp_path_factory.mktemp("grouped") / "ids.csv"
    g = torch.Generator().manual_seed(0)
    lines = ["grp,x,y"]
    for grp in range(20):
        for _ in range(8 + grp % 5):
            lines.append(f"{grp},{float(torch.rand((), generator=g)):.6f},{grp}")
    path.write_text("\n".join(lines) + "\n")
    return GroupedRegressionFamily(name="ids", dataset="ids", csv_path=path, group="grp",
                                   inputs=["x"], target="y", min_rows=8)  # fmt: skip


def test_curve_groups_match_metric_curves(family):
    kw = {"split": "test", "n_tasks": 120, "shots": 3, "query": 4, "seed": 7}
    seen = metric_curves(GroupEcho(family), family, steps=0, **kw)[0].long()
    groups = curve_task_groups(family, **kw)
    test_groups = torch.as_tensor(family.group_splits["test"])
    assert torch.isin(groups, test_groups).all()
    assert torch.equal(seen, groups)


def test_eval_groups_match_evaluate_tasks(family):
    kw = {"n_tasks": 130, "shots": 3, "query": 4, "seed": 2, "batch_size": 50}
    seen = evaluate_tasks(GroupEcho(family), family, steps=0, **kw)[0].long()
    assert torch.equal(seen, eval_task_groups(family, **kw))


def test_ungrouped_family_is_refused():
    with pytest.raises(ValueError, match="no groups"):
        curve_task_groups(SinusoidFamily(), split="test", n_tasks=2, shots=2, query=2)
