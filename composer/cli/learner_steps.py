"""``--steps`` given to a learner that takes no adaptation steps (``eval``, ``verify``): one refusal."""

from __future__ import annotations


def check_steps_apply(steps: int | None, learner: object, algo: str) -> None:
    """Raise ``ValueError`` when ``steps`` (a ``--steps`` value) is given for a learner without
    adaptation steps: an in-context learner, or the annealed learner (a closed-form fit)."""
    from metacompose.algorithms.annealed_sum import AnnealedSumLearner
    from metacompose.algorithms.context_learner import ContextLearner

    if not steps or not isinstance(learner, (AnnealedSumLearner, ContextLearner)):
        return
    how = " (it fits each task in closed form)" if isinstance(learner, AnnealedSumLearner) else ""
    raise ValueError(f"--steps {steps}: {algo} has no adaptation steps{how}")
