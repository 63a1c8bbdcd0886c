"""The ``algo`` section's inner-loop settings as one typed value, read the same way for the plain
and the routed learner (``metacompose.build``, ``metacompose.router.build``)."""

from __future__ import annotations

from omegaconf import DictConfig

from metacompose.algorithms import InnerLoop


def inner_loop(algo: DictConfig) -> InnerLoop:
    """``InnerLoop`` from ``algo.inner_lr``, ``inner_steps``, ``eval_inner_steps``,
    ``first_order``, ``vectorize`` and ``chunk_size``."""
    return InnerLoop(
        lr=algo.inner_lr,
        steps=algo.inner_steps,
        eval_steps=algo.eval_inner_steps,
        first_order=algo.first_order,
        vectorize=algo.vectorize,
        chunk_size=algo.chunk_size,
    )
