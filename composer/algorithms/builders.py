"""Learners outside the MAML family by ``algo.name``, and the arguments a run config hands them.

:func:`metacompose.build.build_learner` calls ``ALGO_BUILDERS[name](**handed, **algo.args)``;
config validation binds ``algo.args`` to the same functions, less ``HANDED_ARGS``.
"""

from __future__ import annotations

from collections.abc import Callable

from metacompose.algorithms.annealed_sum_builder import annealed_sum_learner
from metacompose.algorithms.cnp import cnp_learner
from metacompose.algorithms.incontext import incontext_learner
from metacompose.algorithms.learned_opt_builder import learned_opt_learner

ALGO_BUILDERS: dict[str, Callable] = {
    "incontext": incontext_learner,
    "cnp": cnp_learner,
    "learned_opt": learned_opt_learner,
    "annealed_sum": annealed_sum_learner,
}
# Set from the run config (the graph, the family, algo.eval_inner_steps), never in algo.args.
HANDED_ARGS = ("encoder", "targets", "classification", "graph", "loss", "eval_inner_steps")
