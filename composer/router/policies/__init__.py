"""Routing policies: the router's own (relaxed / argmax), uniform, search, support search.

Rules-valid selection at evaluation (:class:`metacompose.verify.routing.RulesValidRouting`) lives with
the symbolic layer and implements the same :class:`RoutingPolicy` protocol.
"""

from metacompose.router.policies.base import (
    RoutingDecision,
    RoutingPolicy,
    RoutingProblem,
    one_hot_decision,
)
from metacompose.router.policies.learned import ArgmaxRouting, RelaxedRouting
from metacompose.router.policies.search import SearchRouting, annealed_pick
from metacompose.router.policies.support_search import SupportSearchRouting, slot_scores
from metacompose.router.policies.uniform import UniformRouting

__all__ = [
    "ArgmaxRouting",
    "RelaxedRouting",
    "RoutingDecision",
    "RoutingPolicy",
    "RoutingProblem",
    "SearchRouting",
    "SupportSearchRouting",
    "UniformRouting",
    "annealed_pick",
    "one_hot_decision",
    "slot_scores",
]
