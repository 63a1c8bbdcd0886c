"""Symbolic safety layer: certified stability bounds on adaptations and z3 composition rules.

Depends on torch, z3, networkx, numpy and omegaconf only (never on ``composer``).
"""

from metacompose.symbolic.activations import KINDS as ACTIVATION_KINDS
from metacompose.symbolic.branch_and_bound import BranchAndBoundResult, branch_and_bound
from metacompose.symbolic.certify import TIERS, certify
from metacompose.symbolic.diff_propagation import PairBounds, output_bounds, propagate_pair
from metacompose.symbolic.exact_tier import exact_check
from metacompose.symbolic.image_ops import Conv2d, MaxPool2d
from metacompose.symbolic.lipschitz import certify_lipschitz
from metacompose.symbolic.network import (
    INPUT,
    Activation,
    Add,
    Affine,
    Concat,
    Network,
    NetworkPair,
    Node,
    ReLU,
)
from metacompose.symbolic.objectives import Objective
from metacompose.symbolic.prediction import certify_prediction
from metacompose.symbolic.results import (
    Certificate,
    CertificationReport,
    ClaimResult,
    Counterexample,
    Estimate,
    Proved,
    Unknown,
    Violated,
)
from metacompose.symbolic.rounding import NonFiniteError, rational_lower, rational_upper
from metacompose.symbolic.rules import (
    CompositionRules,
    RulesCheck,
    RulesError,
    RuleViolation,
    SlotRules,
    load_rules,
    rules_from_dict,
    validate_graph,
)
from metacompose.symbolic.selection import (
    Candidate,
    Selection,
    best_valid_selection,
    brute_force_selection,
    selection_graph,
)
from metacompose.symbolic.self_test import SelfTestSummary, self_test
from metacompose.symbolic.spec import (
    BoxDomain,
    DeviationBound,
    ExactFloat,
    LinfBallDomain,
    LipschitzBound,
    OutputRange,
    PredictionStability,
    StabilitySpec,
    StepSizeCheck,
    TrustRegion,
    domain_boxes,
    exact_value,
)
from metacompose.symbolic.spec_yaml import SpecError, load_spec, spec_from_dict
from metacompose.symbolic.witness import format_vnn_witness, parse_vnn_witness, write_vnn_witness

__all__ = [
    "ACTIVATION_KINDS",
    "INPUT",
    "TIERS",
    "Activation",
    "Add",
    "Affine",
    "BoxDomain",
    "BranchAndBoundResult",
    "Candidate",
    "Certificate",
    "CertificationReport",
    "ClaimResult",
    "CompositionRules",
    "Concat",
    "Conv2d",
    "Counterexample",
    "DeviationBound",
    "Estimate",
    "ExactFloat",
    "LinfBallDomain",
    "LipschitzBound",
    "MaxPool2d",
    "Network",
    "NetworkPair",
    "Node",
    "NonFiniteError",
    "Objective",
    "OutputRange",
    "PairBounds",
    "PredictionStability",
    "Proved",
    "ReLU",
    "RuleViolation",
    "RulesCheck",
    "RulesError",
    "Selection",
    "SelfTestSummary",
    "SlotRules",
    "SpecError",
    "StabilitySpec",
    "StepSizeCheck",
    "TrustRegion",
    "Unknown",
    "Violated",
    "best_valid_selection",
    "branch_and_bound",
    "brute_force_selection",
    "certify",
    "certify_lipschitz",
    "certify_prediction",
    "domain_boxes",
    "exact_check",
    "exact_value",
    "format_vnn_witness",
    "load_rules",
    "load_spec",
    "output_bounds",
    "parse_vnn_witness",
    "propagate_pair",
    "rational_lower",
    "rational_upper",
    "rules_from_dict",
    "selection_graph",
    "self_test",
    "spec_from_dict",
    "validate_graph",
    "write_vnn_witness",
]
