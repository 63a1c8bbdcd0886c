"""The MAML family on any ``ModuleGraph``: functional, vmapped over tasks; the ``Learner`` protocol."""

from metacompose.algorithms.inner_loop import adapt, broadcast_tasks, query_losses, sgd_step
from metacompose.algorithms.inner_settings import InnerLoop
from metacompose.algorithms.learner import Learner, MetaStep, ParameterAdapter, TaskExport
from metacompose.algorithms.losses import task_loss, task_metric
from metacompose.algorithms.meta_learner import ALGORITHMS, InnerLoopEnforcer, MetaLearner

__all__ = [
    "ALGORITHMS",
    "InnerLoop",
    "InnerLoopEnforcer",
    "Learner",
    "MetaLearner",
    "MetaStep",
    "ParameterAdapter",
    "TaskExport",
    "adapt",
    "broadcast_tasks",
    "query_losses",
    "sgd_step",
    "task_loss",
    "task_metric",
]
