"""Route a checkpoint at evaluation another way than its config says (``--routing``).

A learner trained with the task's descriptor can be routed from the support set at evaluation:
the intermediate between the descriptor-routed upper bound and a learner that never sees a
descriptor. A routed learner (``router.enabled``) can likewise switch between its router's argmax
and support-loss search. The override changes only the config key that builds the evaluation
policy; the weights are the checkpoint's own.
"""

from __future__ import annotations

import contextlib
import io
import warnings

from omegaconf import DictConfig, OmegaConf

from metacompose.build import build_family, build_learner
from metacompose.config import ConfigError
from metacompose.config.schema import RunConfig
from metacompose.graph import GraphError

# (the learner's config key that names its evaluation routing, the values ``--routing`` takes)
ANNEALED = ("algo.args.eval_routing", ("data", "descriptor"))
ROUTER = ("router.eval_routing", ("router", "search", "topk"))


class RerouteError(ConfigError):
    """``--routing`` names a policy the checkpoint's learner cannot evaluate with."""


def routing_key(cfg: DictConfig) -> tuple[str, tuple[str, ...]] | None:
    """The evaluation-routing key of the learner ``cfg`` builds and its values; ``None``: the
    learner does not route (one module graph for every task) or routes uniformly."""
    if "router" in cfg and cfg.router.enabled:
        return None if cfg.router.routing == "uniform" else ROUTER
    if cfg.algo.name == "annealed_sum":
        trained = (cfg.algo.get("args") or {}).get("routing", "data")
        return None if trained == "uniform" else ANNEALED
    return None


def reroute(cfg: DictConfig, routing: str, *, source: str) -> None:
    """Set ``cfg``'s evaluation routing to ``routing`` in place, before the learner is built.

    Raises:
        RerouteError: one line naming ``--routing`` and the value: the learner does not route,
            routes by rules, the value is not one of its policies, or descriptor routing of a
            learner trained from data.
    """
    found = routing_key(cfg)
    if found is None:
        raise RerouteError(
            f"--routing {routing}: {source} ({cfg.algo.name}) does not choose a composition per "
            "task (no router, or uniform routing), so there is no routing to change"
        )
    key, values = found
    if routing not in values:
        raise RerouteError(
            f"--routing {routing}: expected one of {', '.join(values)} for {source} ({key})"
        )
    if key == ROUTER[0] and cfg.router.get("rules"):
        raise RerouteError(
            f"--routing {routing}: {source} routes by its composition rules at evaluation "
            f"(router.rules: {cfg.router.rules}: the best rules-valid graph), not by a policy"
        )
    trained = (cfg.algo.get("args") or {}).get("routing", "data")
    if routing == "descriptor" and trained != "descriptor":
        raise RerouteError(
            f"--routing descriptor: {source} was trained routed from data (algo.args.routing: "
            f"{trained}), so its candidates are not in the descriptor's order; only "
            "--routing data applies"
        )
    cfg.merge_with_dotlist([f"{key}={routing}"])


def reroute_failed(routing: str, source: str, error: Exception) -> RerouteError:
    """The learner would not build routed this way (e.g. anchors with support search): one line
    naming ``--routing``, with the builder's reason."""
    return RerouteError(f"--routing {routing}: {source}: {error}")


def builds_as_trained(config: dict | None, graph: dict) -> bool:
    """Whether a checkpoint's own config (no ``--routing``) builds its learner and reads its
    stored ``graph``: when it does not, a failure under ``--routing`` is the checkpoint's, not the
    routing's (not :func:`reroute_failed`). What the second build prints is not shown again."""
    if config is None:
        return False
    try:
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.create(config))
            learner = build_learner(cfg, build_family(cfg.task))
            type(learner.graph).from_json_dict(graph)
    except (ValueError, GraphError, KeyError, TypeError):
        return False
    return True
