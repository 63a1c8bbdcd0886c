"""The replicas' shares of a meta-batch: every task once, in order, equal shares; unsplit, all."""

from __future__ import annotations

import pytest

from metacompose.algorithms.replica_tasks import replica_slices


@pytest.mark.parametrize("tasks, replicas", [(4, 1), (12, 3), (256, 4), (7, 7)])
def test_a_split_batch_gives_each_task_to_exactly_one_replica_in_equal_shares(tasks, replicas):
    shares = [list(range(tasks))[s] for s in replica_slices(tasks, replicas, True)]
    assert [t for share in shares for t in share] == list(range(tasks))
    assert {len(share) for share in shares} == {tasks // replicas}


def test_unsplit_every_replica_sees_every_task_and_uneven_splits_are_refused():
    assert [list(range(5))[s] for s in replica_slices(5, 3, False)] == [list(range(5))] * 3
    with pytest.raises(ValueError, match="a meta-batch of 10 tasks does not split evenly over 4"):
        replica_slices(10, 4, True)
