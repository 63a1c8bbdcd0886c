"""metacompose: modular neurosymbolic meta-learning.

One installed namespace. The core (this folder, ``composer/`` in the repository) is
``metacompose`` itself: ``metacompose.algorithms``, ``.tasks``, ``.router``, ``.training``, ``.cli``
...; the typed modules are ``metacompose.modules`` and the safety layer ``metacompose.symbolic``
(neither imports the core). The most used names are re-exported here and imported on first use,
so ``import metacompose.modules`` or ``metacompose --help`` pays for nothing else::

    from metacompose import MetaLearner, SinusoidFamily, mlp_graph
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the submodule that defines it (not ``evaluate``: that name is the submodule)
_EXPORTS = {
    "MetaLearner": "metacompose.algorithms",
    "MetaStep": "metacompose.algorithms",
    "ModuleGraph": "metacompose.graph",
    "GraphError": "metacompose.graph",
    "mlp_graph": "metacompose.models",
    "residual_mlp_graph": "metacompose.models",
    "conv_graph": "metacompose.models",
    "TaskBatch": "metacompose.tasks",
    "TaskFamily": "metacompose.tasks",
    "SinusoidFamily": "metacompose.tasks",
    "CompositionalFamily": "metacompose.tasks",
    "RoutedMetaLearner": "metacompose.router",
    "ConfigError": "metacompose.config",
    "load_config": "metacompose.config",
    "train": "metacompose.training",
    "TrainResult": "metacompose.training",
    "load_checkpoint": "metacompose.evaluate",
}

__all__ = [
    "CompositionalFamily",
    "ConfigError",
    "GraphError",
    "MetaLearner",
    "MetaStep",
    "ModuleGraph",
    "RoutedMetaLearner",
    "SinusoidFamily",
    "TaskBatch",
    "TaskFamily",
    "TrainResult",
    "conv_graph",
    "load_checkpoint",
    "load_config",
    "mlp_graph",
    "residual_mlp_graph",
    "train",
]
__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from metacompose.algorithms import MetaLearner, MetaStep
    from metacompose.config import ConfigError, load_config
    from metacompose.evaluate import load_checkpoint
    from metacompose.graph import GraphError, ModuleGraph
    from metacompose.models import conv_graph, mlp_graph, residual_mlp_graph
    from metacompose.router import RoutedMetaLearner
    from metacompose.tasks import CompositionalFamily, SinusoidFamily, TaskBatch, TaskFamily
    from metacompose.training import TrainResult, train


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'metacompose' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
