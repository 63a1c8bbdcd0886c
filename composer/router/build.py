"""Build a ``RoutedMetaLearner`` from a run config's ``router`` and ``algo`` sections.

The config chooses the routing policies (:mod:`metacompose.router.policies`):

========================  ==========================================================
``router.routing``        ``learned``: Gumbel-softmax while training (``tau_*``,
                          ``straight_through``, ``balance_weight``, ``entropy_weight``);
                          ``uniform``: 1/C for every task, always;
                          ``em``: hard EM over joint choices, from data (``em_capacity``,
                          ``em_capacity_steps``, ``search_weight``, ``search_noise``).
``router.search_steps``   > 0: the first meta-iterations route by search
                          (``search_weight``, ``search_noise`` anneals with ``tau_*``).
``router.eval_routing``   ``router``: argmax of the logits; ``search``: lowest support loss;
                          ``topk``: the router's ``eval_top_k`` best, by support loss.
``router.rules``          rules-valid selection at evaluation (built by
                          :func:`metacompose.build.build_learner`, passed in here).
``router.anchors``        > 0: modulation anchors (:mod:`metacompose.router.anchors`).
========================  ==========================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

import torch
from omegaconf import DictConfig, OmegaConf

from metacompose.algorithms.meta_learner import InnerLoopEnforcer
from metacompose.config import ConfigError
from metacompose.graph import GraphError
from metacompose.inner_config import inner_loop
from metacompose.modules.set_encoder import SetEncoder
from metacompose.router.anchors import ModulationAnchors
from metacompose.router.hypernet import RouterHypernetwork
from metacompose.router.learner import RoutedMetaLearner
from metacompose.router.policies import (
    ArgmaxRouting,
    EMRouting,
    RelaxedRouting,
    RoutingPolicy,
    SearchRouting,
    SupportSearchRouting,
    TopKSupportRouting,
    UniformRouting,
)
from metacompose.router.pool import ModulePool, build_pool
from metacompose.router.relaxed import TemperatureSchedule
from metacompose.tasks.base import TaskFamily, derive_seed

Routing = Literal["learned", "uniform", "em"]
EvalRouting = Literal["router", "search", "topk"]
ROUTING_MODES: tuple[str, ...] = get_args(Routing)
EVAL_ROUTING: tuple[str, ...] = get_args(EvalRouting)

PolicyFactory = Callable[[ModulePool], RoutingPolicy]


def build_router(
    *,
    pool: ModulePool,
    in_features: int,
    out_features: int,
    encoder_hidden: int,
    embedding: int,
    hidden: int,
    routed: bool,
    film: bool,
    low_rank: int,
    n_classes: int = 0,
    descriptor_dim: int = 0,
    descriptor_slots: dict[str, tuple[int, int]] | None = None,
    descriptor_one_to_one: bool = False,
) -> RouterHypernetwork:
    """Task encoder over ``(x, y)`` pairs + hypernetwork heads for ``pool``."""
    encoder = SetEncoder(
        in_features=in_features + out_features, hidden=encoder_hidden, out_features=embedding
    )
    targets = pool.modulation_targets(low_rank=low_rank) if (film or low_rank) else []
    return RouterHypernetwork(
        encoder=encoder,
        slot_sizes={s: pool.num_candidates[s] for s in pool.routed_slots} if routed else {},
        targets=targets,
        hidden=hidden,
        n_classes=n_classes,
        descriptor_dim=descriptor_dim,
        film=film,
        descriptor_slots=descriptor_slots,
        descriptor_one_to_one=descriptor_one_to_one,
    )


def training_policy(r: DictConfig) -> RoutingPolicy:
    """``router.routing`` (+ search): the policy of meta-training batches."""
    if r.routing == "uniform":
        return UniformRouting()
    schedule = TemperatureSchedule(start=r.tau_start, end=r.tau_end, steps=r.tau_steps)
    if r.routing == "em":
        return EMRouting(
            weight=r.search_weight,
            capacity=r.em_capacity,
            capacity_steps=r.em_capacity_steps,
            anneal=schedule if r.search_noise else None,
            prior_weight=r.em_prior_weight,
        )
    relaxed = RelaxedRouting(
        schedule=schedule,
        straight_through=r.straight_through,
        balance_weight=r.balance_weight,
        entropy_weight=r.entropy_weight,
    )
    if not r.search_steps:
        return relaxed
    anneal = schedule if r.search_noise else None
    return SearchRouting(steps=r.search_steps, weight=r.search_weight, then=relaxed, anneal=anneal)


def eval_policy(r: DictConfig) -> RoutingPolicy:
    """``router.eval_routing``: the policy at evaluation (uniform routing stays uniform)."""
    if r.routing == "uniform":
        return UniformRouting()
    if r.eval_routing == "topk":
        return TopKSupportRouting(k=r.eval_top_k)
    return SupportSearchRouting() if r.eval_routing == "search" else ArgmaxRouting()


def check_router_config(r: DictConfig, *, rules: bool) -> None:
    """The combinations no policy serves, in one line naming the keys."""
    searching = r.search_steps > 0 or r.routing == "em" or r.eval_routing in ("search", "topk")
    if r.routing == "uniform" and (searching or rules or r.descriptor_slots):
        raise ConfigError(
            "router.routing=uniform: search_steps, eval_routing=search, rules and "
            "descriptor_slots need router.routing: learned"
        )
    if r.anchors and searching:
        raise ConfigError("router.anchors: anchors do not combine with routing search")
    if rules and r.eval_routing in ("search", "topk"):
        raise ConfigError(
            f"router.rules: rules-valid selection replaces eval_routing={r.eval_routing}"
        )
    if r.routing == "em" and (r.search_steps or r.descriptor_slots):
        raise ConfigError(
            "router.routing=em: every meta-iteration is routed by EM from data; "
            "search_steps and descriptor_slots do not apply"
        )


def build_routed_learner(
    cfg: DictConfig,
    family: TaskFamily,
    *,
    loss: str,
    eval_routing: PolicyFactory | None = None,
    enforcer: InnerLoopEnforcer | None = None,
) -> RoutedMetaLearner:
    """Deterministic init from ``cfg.seed``; errors name the config key at fault.

    Args:
        eval_routing: builds the evaluation policy from the pool (rules-valid selection);
            ``None``: the one ``router.eval_routing`` names.
        enforcer: certifies each task's adaptation (:mod:`metacompose.verify.enforce`).
    """
    r = cfg.router
    check_router_config(r, rules=eval_routing is not None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "init") % (2**31))
        pool = _pool(r, family)
        choices = math.prod(pool.num_candidates[s] for s in pool.routed_slots)
        if r.routing != "uniform" and r.eval_routing == "topk" and r.eval_top_k > choices:
            raise ConfigError(
                f"router.eval_top_k={r.eval_top_k}: the template has {choices} joint choices"
            )
        router = _router(r, pool, family, classification=loss == "cross_entropy")
        anchors = _anchors(r, router)
        evaluation = eval_routing(pool) if eval_routing is not None else eval_policy(r)
        policies = (training_policy(r), evaluation)
        return _learner(cfg, loss, pool, router, anchors, *policies, enforcer=enforcer)


def _pool(r: DictConfig, family: TaskFamily) -> ModulePool:
    try:
        pool = build_pool(OmegaConf.to_container(r.template, resolve=True))
    except (GraphError, ValueError) as e:
        raise ConfigError(str(e)) from e
    if pool.in_space.shape != family.in_space.shape:
        raise ConfigError(
            f"router.template: pool input {pool.in_space} does not match task family input "
            f"{family.in_space}"
        )
    return pool


def _router(
    r: DictConfig, pool: ModulePool, family: TaskFamily, *, classification: bool
) -> RouterHypernetwork:
    try:
        return build_router(
            pool=pool,
            in_features=family.in_space.numel,
            out_features=family.out_dim,
            encoder_hidden=r.encoder_hidden,
            embedding=r.embedding,
            hidden=r.hidden,
            routed=r.routing in ("learned", "em"),
            film=r.film,
            low_rank=r.low_rank,
            n_classes=family.out_dim if classification else 0,
            descriptor_dim=r.descriptor_dim,
            descriptor_slots={k: tuple(v) for k, v in r.descriptor_slots.items()},
            descriptor_one_to_one=r.descriptor_one_to_one,
        )
    except ValueError as e:
        raise ConfigError(f"router: {e}") from e


def _anchors(r: DictConfig, router: RouterHypernetwork) -> ModulationAnchors | None:
    if not r.anchors:
        return None
    if not router.layout:
        raise ConfigError("router.anchors: anchors need generated modulations (film or low_rank)")
    return ModulationAnchors(
        layout=router.layout, slot_of=router.layout_slot, count=r.anchors, init=r.anchor_init
    )


def _learner(
    cfg, loss, pool, router, anchors, training, evaluation, *, enforcer
) -> RoutedMetaLearner:
    a = cfg.algo
    try:
        return RoutedMetaLearner(
            pool=pool,
            router=router,
            training_routing=training,
            eval_routing=evaluation,
            anchors=anchors,
            algorithm=a.name,
            loss=loss,
            inner=inner_loop(a),
            adapt_nodes=list(a.adapt) if a.adapt is not None else None,
            seed=derive_seed(cfg.seed, "gumbel") % (2**31),
            enforcer=enforcer,
        )
    except (ValueError, KeyError) as e:
        raise ConfigError(f"router/algo: {e}") from e
