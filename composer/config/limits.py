"""How large a config value may be: past these, a value is a likely typo (an extra digit, a
swapped pair), and a run would hang, run out of memory or only diverge instead of being refused.

Bounds are deliberately loose: far above the shipped configs' values, low enough that each size
alone, the others at their shipped values, still allocates modestly.
"""

from __future__ import annotations

STEPS_LIMIT = 10**8  # meta-iterations: days of training at the fastest step rate
INNER_LIMIT = 10**4  # inner-loop steps per task
SIZE_LIMIT = 10**6  # examples or tasks per batch, widths
LR_LIMIT = 100.0  # step sizes, weight decay, initial scales: past this, training only diverges
# The router's sizes (metacompose.router): far above the shipped configs' (widths 32-64, 16
# anchors, top 4), low enough that each alone allocates modestly. A trunk width W holds W x (every
# generated modulation) weights, a rank R adds R x (in + out) modulations per modulated layer, and
# A anchors or a top K evaluate A (K) copies of every task of a meta-batch at once.
ROUTER_WIDTH_LIMIT = 4096  # router.encoder_hidden, embedding, hidden, descriptor_dim
ROUTER_RANK_LIMIT = 256  # router.low_rank
ROUTER_COPIES_LIMIT = 1024  # router.anchors, eval_top_k
# Weights of the router's loss terms (router.balance_weight, entropy_weight, search_weight,
# em_prior_weight; the shipped configs use 0-1): past this the term drowns the task's loss, and at
# 1e300 it overflows float32 (an infinite loss that trained with exit 0).
ROUTER_WEIGHT_LIMIT = 1000.0
# enforce.timeout_s: a solver budget per claim, inside every inner-loop adaptation (z3 counts it in
# milliseconds in 32 bits).
ENFORCE_TIMEOUT_LIMIT = 3600.0
# Gumbel-softmax temperatures: below the minimum the soft gradient (scaled by 1 / tau) explodes,
# above the maximum every routing weight is about 1 / C (no routing at all).
TAU_RANGE = (1e-3, 100.0)
# algo.name -> algo.args sizes of its learner (metacompose.algorithms.builders). The shipped
# configs: incontext width 64, heads 4, layers 2-3, ff 128; cnp hidden 128, layers 3; learned_opt
# hidden 16, random-network widths 20-40, depth 2, a pool of 8. A transformer block holds
# 4 width^2 + 2 width ff weights, a CNP about 2 layers hidden^2; the learned rule runs its
# hidden-wide MLP on every weight of the model, and of each drawn random network, at every step.
ALGO_SIZE_LIMITS: dict[str, dict[str, int]] = {
    "incontext": {"width": 2048, "heads": 256, "layers": 64, "ff": 8192},
    "cnp": {"hidden": 2048, "layers": 64},
    # every pair at every context pair per task: (candidates x contexts)^2 fits
    "annealed_sum": {
        "candidates": 64,
        "knots": 4096,
        "contexts": 64,
        "eval_contexts": 256,
        "replicas": 32,
        "anneal_steps": 10**8,
        "refine": 16,  # rounds of sub-grid context search (each divides the resolution by 4)
        "balance_steps": 10**8,
        "balanced_replicas": 32,
    },
    "learned_opt": {
        "hidden": 128,
        "random_net_widths": 1024,
        "random_net_depth": 16,
        "random_net_pool": 1024,
    },
}
# algo.name -> real-valued algo.args past which a bound is no bound: learned_opt's max_step (the
# largest change of any weight per step; shipped 2.5: past LR_LIMIT a step only diverges) and
# guard_slack (a step raising the support loss past this multiple of its lowest is undone;
# shipped 1.2: at 1e300 the guard is off, which guard: false says)
ALGO_SCALE_LIMITS: dict[str, dict[str, float]] = {
    "annealed_sum": {
        "span": 1e4,
        "g_span": 1e4,
        "tau_start": 100.0,
        "ridge": 1000.0,
        "cross_fit": 1000.0,
    },
    "learned_opt": {"max_step": LR_LIMIT, "guard_slack": 1000.0},
}
# incontext / cnp: the weights their sizes together give the predictor (400 MB of float32; each size
# alone at its limit gives at most about half of it)
CONTEXT_WEIGHTS_LIMIT = 10**8
