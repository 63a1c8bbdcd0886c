"""Build a ``RoutedMetaLearner`` from a run config's ``router`` and ``algo`` sections."""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from metacompose.config import ConfigError
from metacompose.graph import GraphError
from metacompose.modules.set_encoder import SetEncoder
from metacompose.router.hypernet import RouterHypernetwork
from metacompose.router.learner import RoutedMetaLearner
from metacompose.router.pool import ModulePool, build_pool
from metacompose.router.relaxed import TemperatureSchedule
from metacompose.tasks.base import TaskFamily, derive_seed


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
    descriptor_dim: int = 0,
    descriptor_classes: int = 0,
    descriptor_slots: dict[str, tuple[int, int]] | None = None,
    descriptor_one_to_one: bool = False,
    amortized: bool = True,
    descriptor_local: bool = False,
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
        descriptor_dim=descriptor_dim,
        descriptor_classes=descriptor_classes,
        film=film,
        descriptor_slots=descriptor_slots,
        descriptor_one_to_one=descriptor_one_to_one,
        amortized=amortized,
        descriptor_local=descriptor_local,
    )


def build_routed_learner(cfg: DictConfig, family: TaskFamily, *, loss: str) -> RoutedMetaLearner:
    """Deterministic init from ``cfg.seed``; errors name the config key at fault."""
    r, a = cfg.router, cfg.algo
    template = OmegaConf.to_container(r.template, resolve=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "init") % (2**31))
        try:
            pool = build_pool(template)
        except (GraphError, ValueError) as e:
            raise ConfigError(str(e)) from e
        if pool.in_space.shape != family.in_space.shape:
            raise ConfigError(
                f"router.template: pool input {pool.in_space} does not match task family input "
                f"{family.in_space}"
            )
        classification = loss == "cross_entropy"
        if r.descriptor_slots and r.routing != "learned":
            raise ConfigError("router.descriptor_slots needs router.routing: learned")
        try:
            router = build_router(
                pool=pool,
                in_features=family.in_space.numel,
                out_features=family.out_dim,
                encoder_hidden=r.encoder_hidden,
                embedding=r.embedding,
                hidden=r.hidden,
                routed=r.routing == "learned",
                film=r.film,
                low_rank=r.low_rank,
                descriptor_dim=r.descriptor_dim,
                descriptor_classes=r.descriptor_classes,
                descriptor_slots={k: tuple(v) for k, v in r.descriptor_slots.items()},
                descriptor_one_to_one=r.descriptor_one_to_one,
                amortized=r.amortized,
                descriptor_local=r.descriptor_local,
            )
        except ValueError as e:
            raise ConfigError(f"router: {e}") from e
        try:
            return RoutedMetaLearner(
                pool=pool,
                router=router,
                algorithm=a.name,
                loss=loss,
                n_classes=family.out_dim if classification else 0,
                inner_lr=a.inner_lr,
                modulation_lr=r.modulation_lr,
                inner_steps=a.inner_steps,
                eval_inner_steps=a.eval_inner_steps,
                adapt=r.adapt,
                adapt_nodes=list(a.adapt) if a.adapt is not None else None,
                routing=r.routing,
                schedule=TemperatureSchedule(start=r.tau_start, end=r.tau_end, steps=r.tau_steps),
                straight_through=r.straight_through,
                balance_weight=r.balance_weight,
                entropy_weight=r.entropy_weight,
                first_order=a.first_order,
                vectorize=a.vectorize,
                chunk_size=a.chunk_size,
                seed=derive_seed(cfg.seed, "gumbel") % (2**31),
                search_steps=r.search_steps,
                search_weight=r.search_weight,
                eval_routing=r.eval_routing,
                search_noise=r.search_noise,
                anchors=r.anchors,
                anchor_init=r.anchor_init,
                anchor_rounds=r.anchor_rounds,
            )
        except (ValueError, KeyError) as e:
            raise ConfigError(f"router/algo: {e}") from e
