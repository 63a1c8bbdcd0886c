"""Per-task composition: module pool, task encoder + router hypernetwork, routing policies."""

from metacompose.router.anchors import ModulationAnchors
from metacompose.router.candidate_bank import ContextBank
from metacompose.router.hypernet import RouterHypernetwork, RouterOutput, support_features
from metacompose.router.learner import ROUTED_ALGORITHMS, RoutedMetaLearner
from metacompose.router.least_squares import PairFits, pair_least_squares
from metacompose.router.metrics import normalized_mutual_info
from metacompose.router.modulation import ModTarget, film_fold, modulate, modulation_targets
from metacompose.router.policies import (
    ArgmaxRouting,
    RelaxedRouting,
    RoutingDecision,
    RoutingPolicy,
    RoutingProblem,
    SearchRouting,
    SupportSearchRouting,
    UniformRouting,
)
from metacompose.router.pool import ModulePool, build_pool, route_key
from metacompose.router.relaxed import (
    TemperatureSchedule,
    balance_loss,
    gumbel_noise,
    hard_route,
    mean_entropy,
    relaxed_route,
)
from metacompose.router.sum_em import SumEMLearner, build_sum_em, train_sum_em

__all__ = [
    "ROUTED_ALGORITHMS",
    "ArgmaxRouting",
    "ContextBank",
    "ModTarget",
    "ModulationAnchors",
    "ModulePool",
    "PairFits",
    "RelaxedRouting",
    "RoutedMetaLearner",
    "RouterHypernetwork",
    "RouterOutput",
    "RoutingDecision",
    "RoutingPolicy",
    "RoutingProblem",
    "SearchRouting",
    "SumEMLearner",
    "SupportSearchRouting",
    "TemperatureSchedule",
    "UniformRouting",
    "balance_loss",
    "build_pool",
    "build_sum_em",
    "film_fold",
    "gumbel_noise",
    "hard_route",
    "mean_entropy",
    "modulate",
    "modulation_targets",
    "normalized_mutual_info",
    "pair_least_squares",
    "relaxed_route",
    "route_key",
    "support_features",
    "train_sum_em",
]
