"""``InnerLoop``: the settings of a gradient-based inner loop, one typed value shared by every
learner that adapts by gradient steps (``MetaLearner``, the router's ``RoutedMetaLearner``)."""

from __future__ import annotations

from dataclasses import dataclass

from metacompose.algorithms.inner_loop import Vectorize


@dataclass(frozen=True)
class InnerLoop:
    """How a learner adapts to one task's support set.

    Args:
        lr: inner SGD step size (Meta-SGD: the initial value of every learned step size).
        steps: inner steps during meta-training (>= 1).
        eval_steps: inner steps at evaluation (>= 0; may differ from ``steps``).
        first_order: force the first-order approximation (implied by ``fomaml`` and ``reptile``).
        vectorize: ``vmap`` over the tasks of a meta-batch, a per-task Python loop (``False``), or
            ``"auto"``: the faster of the two for the input and device
            (:func:`~metacompose.algorithms.inner_loop.use_vmap`: the loop for images on CPU).
        chunk_size: ``vmap`` at most this many tasks at once (``None``: all).
    """

    lr: float = 0.01
    steps: int = 1
    eval_steps: int = 10
    first_order: bool = False
    vectorize: Vectorize = "auto"
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"inner_steps={self.steps}: must be >= 1")
        if self.eval_steps < 0:
            raise ValueError(f"eval_inner_steps={self.eval_steps}: must be >= 0")


DEFAULT_INNER = InnerLoop()  # frozen: safe to share as a default argument
