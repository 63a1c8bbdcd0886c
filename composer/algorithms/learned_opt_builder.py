"""``algo.name: learned_opt``: the learned optimizer's learner from a run config's ``algo.args``
(:mod:`metacompose.algorithms.learned_opt` holds the rule and the learner)."""

from __future__ import annotations

from typing import Literal

from metacompose.algorithms.learned_opt import LearnedOptimizerLearner, LearnedUpdateRule
from metacompose.algorithms.meta_learner import InnerLoopEnforcer
from metacompose.algorithms.rule_curriculum import RandomNetworks
from metacompose.algorithms.rule_pool import PersistentUnrolls
from metacompose.graph import ModuleGraph
from metacompose.modules.activations import ACTIVATIONS


def _check_random_networks(
    *, widths: list[int] | None, activations: list[str] | None, depth: int
) -> None:
    """Refuse ``random_net_*`` values the drawn networks could not be built from, here rather
    than at the meta-iteration that first draws one (the message names the argument and its value).

    Raises:
        ValueError: a width below 1, an unknown activation name, or a depth below 1.
    """
    if widths is not None and any(w < 1 for w in widths):
        raise ValueError(f"random_net_widths entries must be >= 1, got {list(widths)}")
    unknown = [a for a in activations or () if a not in ACTIVATIONS]
    if unknown:
        raise ValueError(
            f"random_net_activations: unknown activation {unknown[0]!r}; known: {sorted(ACTIVATIONS)}"
        )
    if depth < 1:
        raise ValueError(f"random_net_depth must be >= 1, got {depth}")


def learned_opt_learner(
    *,
    graph: ModuleGraph,
    loss: str,
    eval_inner_steps: int,
    hidden: int = 16,
    max_step: float = 0.1,
    init_lr: float = 0.01,
    init_rule: Literal["adam", "sgd"] = "adam",
    out_gain: float = 1.0,
    far_lr: float = 0.0,
    far_rule: Literal["adam", "rprop"] = "adam",
    horizon: int = 10,
    truncation: int | None = 5,
    learn_init: bool = True,
    warmup: int = 0,
    guard: bool = True,
    guard_slack: float = 1.0,
    random_net_prob: float = 0.0,
    random_net_widths: list[int] | None = None,
    random_net_activations: list[str] | None = None,
    random_net_depth: int = 2,
    random_net_pool: int = 0,
    random_net_unroll: int = 100,
    enforcer: InnerLoopEnforcer | None = None,
) -> LearnedOptimizerLearner:
    """The ``algo.name: learned_opt`` learner; ``algo.args`` sets the keyword arguments after
    ``eval_inner_steps`` (see :class:`LearnedUpdateRule`, :class:`LearnedOptimizerLearner` and,
    for ``random_net_*``, :class:`~metacompose.algorithms.rule_curriculum.RandomNetworks`; MLP
    families only: the drawn networks take the graph's input and output sizes;
    ``random_net_pool > 0``: that many of their adaptations persist across meta-iterations, each
    for ``random_net_unroll`` steps, :class:`~metacompose.algorithms.rule_pool.PersistentUnrolls`);
    ``enforcer`` comes from the config's ``enforce`` section."""
    _check_random_networks(widths=random_net_widths, activations=random_net_activations,
                           depth=random_net_depth)  # fmt: skip
    rule = LearnedUpdateRule(hidden=hidden, max_step=max_step, init_lr=init_lr, init_rule=init_rule,
                             out_gain=out_gain, far_lr=far_lr, far_rule=far_rule)  # fmt: skip
    networks = pool = None
    if random_net_pool < 0 or random_net_unroll < 1:
        raise ValueError(f"random_net_pool must be >= 0 and random_net_unroll >= 1, got "
                         f"{random_net_pool}, {random_net_unroll}")  # fmt: skip
    if random_net_pool:
        pool = PersistentUnrolls(size=random_net_pool, horizon=random_net_unroll)
    if random_net_prob:
        if graph.in_space.kind != "vec":
            raise ValueError("random_net_prob: random networks are MLPs (vector inputs only)")
        networks = RandomNetworks(
            prob=random_net_prob, widths=tuple(random_net_widths or (20, 40)),
            activations=tuple(random_net_activations or ("relu",)), depth=random_net_depth,
            in_features=graph.in_space.numel, out_features=graph.out_space.numel,
        )  # fmt: skip
    return LearnedOptimizerLearner(
        graph=graph, rule=rule, loss=loss, horizon=horizon, truncation=truncation,
        eval_inner_steps=eval_inner_steps, learn_init=learn_init, warmup=warmup,
        networks=networks, pool=pool, guard=guard_slack if guard else None, enforcer=enforcer,
    )  # fmt: skip
