"""Routing policies: the router's own (relaxed / argmax), uniform, search, support search, hard EM
from data (training) and the router's top-k re-ranked by support loss (evaluation).

Rules-valid selection at evaluation (:class:`metacompose.verify.routing.RulesValidRouting`) lives with
the symbolic layer and implements the same :class:`RoutingPolicy` protocol.
"""

from metacompose.router.policies.base import (
    RoutingDecision,
    RoutingPolicy,
    RoutingProblem,
    one_hot_decision,
)
from metacompose.router.policies.em import EMRouting, balanced_pick, router_cross_entropy
from metacompose.router.policies.learned import ArgmaxRouting, RelaxedRouting
from metacompose.router.policies.search import SearchRouting, annealed_pick
from metacompose.router.policies.support_search import SupportSearchRouting, slot_scores
from metacompose.router.policies.top_k import TopKSupportRouting, top_joint_choices
from metacompose.router.policies.uniform import UniformRouting

__all__ = [
    "ArgmaxRouting",
    "EMRouting",
    "RelaxedRouting",
    "RoutingDecision",
    "RoutingPolicy",
    "RoutingProblem",
    "SearchRouting",
    "SupportSearchRouting",
    "TopKSupportRouting",
    "UniformRouting",
    "annealed_pick",
    "balanced_pick",
    "one_hot_decision",
    "router_cross_entropy",
    "slot_scores",
    "top_joint_choices",
]
