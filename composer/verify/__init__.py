"""Verification of metacompose learners with the symbolic layer: IR conversion, certification of
adaptations, inner-loop enforcement, and the router's best valid graph under composition rules."""

from metacompose.verify.adaptation import (
    TaskAdaptation,
    adapt_tasks,
    certify_adaptation,
    graph_forward,
    replay_on_graph,
)
from metacompose.verify.convert import (
    CONVERTERS,
    UnsupportedModuleError,
    graph_to_network,
    module_params,
    pair_from_params,
)
from metacompose.verify.enforce import (
    EVERY,
    MODES,
    EnforcementStats,
    Enforcer,
    build_enforcer,
    project_trust_regions,
)
from metacompose.verify.routing import best_valid_choice, pool_candidates

__all__ = [
    "CONVERTERS",
    "EVERY",
    "MODES",
    "EnforcementStats",
    "Enforcer",
    "TaskAdaptation",
    "UnsupportedModuleError",
    "adapt_tasks",
    "best_valid_choice",
    "build_enforcer",
    "certify_adaptation",
    "graph_forward",
    "graph_to_network",
    "module_params",
    "pair_from_params",
    "pool_candidates",
    "project_trust_regions",
    "replay_on_graph",
]
