"""The MAML family on any ``ModuleGraph``: functional, vmapped over tasks."""

from metacompose.algorithms.inner_loop import adapt, broadcast_tasks, query_losses, sgd_step
from metacompose.algorithms.losses import task_loss, task_metric
from metacompose.algorithms.meta_learner import ALGORITHMS, MetaLearner, MetaStep

__all__ = [
    "ALGORITHMS",
    "MetaLearner",
    "MetaStep",
    "adapt",
    "broadcast_tasks",
    "query_losses",
    "sgd_step",
    "task_loss",
    "task_metric",
]
