"""Which tasks of a meta-batch each replica of the annealed learner trains on
(:class:`~metacompose.algorithms.annealed_sum.AnnealedSumLearner`): all of them, or, with a split
batch, its own consecutive share. Replicas that see the same tasks are steered into the same
optimum by them (docs/router.md, "A split batch"); their own tasks make their searches
independent, and the kept one (the lowest running fit) the best of independent draws."""

from __future__ import annotations


def replica_slices(tasks: int, replicas: int, split: bool) -> list[slice]:
    """Replica ``r``'s tasks of a meta-batch of ``tasks``: every task (``split`` false), or tasks
    ``r n .. (r + 1) n - 1`` with ``n = tasks / replicas``.

    Raises:
        ValueError: ``split`` and ``tasks`` not a multiple of ``replicas``.
    """
    if not split:
        return [slice(None)] * replicas
    if tasks % replicas:
        raise ValueError(
            f"split_batch: a meta-batch of {tasks} tasks does not split evenly over {replicas} "
            "replicas"
        )
    n = tasks // replicas
    return [slice(r * n, (r + 1) * n) for r in range(replicas)]
