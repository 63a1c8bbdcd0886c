"""Turn a validated run config into objects: task family, graph, meta-learner, optimizer."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from omegaconf import DictConfig, OmegaConf

from metacompose.algorithms import Learner, MetaLearner
from metacompose.algorithms.builders import ALGO_BUILDERS
from metacompose.config import ConfigError, check_kwargs, under
from metacompose.config.validate import CHOICES
from metacompose.graph import GraphError, ModuleGraph
from metacompose.inner_config import inner_loop
from metacompose.models import MODEL_BUILDERS
from metacompose.modules.batch_norm import TaskBatchNorm2d
from metacompose.tasks import FAMILIES, SPLITS, TaskFamily, derive_seed


def _container(node) -> dict:
    return (
        OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    )


def build_family(task_cfg: DictConfig) -> TaskFamily:
    if task_cfg.family not in FAMILIES:
        raise ConfigError(
            f"task.family: unknown family {task_cfg.family!r}; known: {sorted(FAMILIES)}"
        )
    cls = FAMILIES[task_cfg.family]
    args = _container(task_cfg.args)
    check_kwargs(cls, args, "task.args")
    try:
        family = cls(**args)
    except ConfigError:
        raise
    except (ValueError, FileNotFoundError) as e:
        raise under("task.args", e, args) from e
    check_task_sizes(family, shots=task_cfg.shots, query=task_cfg.query)
    return family


def check_task_sizes(
    family: TaskFamily, *, shots: int, query: int, where: str = "task.shots/task.query"
) -> None:
    """Draw one task of every split: a family too small for ``shots + query`` fails here, in one
    line naming ``where`` and the family's limit, instead of at the first meta-batch.

    Raises:
        ConfigError: the family cannot serve ``shots`` support and ``query`` query examples.
    """
    g = torch.Generator().manual_seed(0)
    failed: dict[str, Exception] = {}
    for split in SPLITS:
        try:
            family.sample(1, shots=shots, query=query, generator=g, split=split)
        except (ValueError, IndexError, RuntimeError) as e:
            failed[split] = e
    if failed:
        split, e = next(iter(failed.items()))
        which = "" if len(failed) == len(SPLITS) else f" ({split} split)"
        reason = " ".join(str(e).split())[:300]
        raise ConfigError(
            f"{where}: {family.name} cannot serve shots={shots} + query={query}{which}: {reason}"
        ) from e


def check_descriptor(
    family: TaskFamily, *, dim: int, shots: int, query: int, said: object = None
) -> None:
    """``router.descriptor_dim`` (``dim``; and so ``router.descriptor_slots``) is the width of the
    vector descriptor the family's tasks carry (one task of ``shots`` + ``query`` points drawn); 0
    reads none. ``said``: the config's ``task.args.descriptor``, for the message.

    Raises:
        ConfigError: a descriptor the family does not give, or of another width.
    """
    if not dim:
        return
    g = torch.Generator().manual_seed(0)
    task = family.sample(1, shots=shots, query=query, generator=g, split="train")
    given = 0 if task.descriptor is None else int(task.descriptor.shape[-1])
    if given == 0:
        hint = f" (task.args.descriptor: {said})" if said is not None else ""
        raise ConfigError(
            f"router.descriptor_dim={dim}: task family {family.name!r} gives no task "
            f"descriptor{hint}; set router.descriptor_dim: 0"
        )
    if given != dim:
        raise ConfigError(
            f"router.descriptor_dim={dim}: task family {family.name!r} gives a descriptor of "
            f"width {given}"
        )


def build_graph(model_cfg: DictConfig, seed: int) -> ModuleGraph:
    """Build the model graph with a deterministic initialisation derived from ``seed``."""
    if model_cfg.builder not in MODEL_BUILDERS:
        raise ConfigError(
            f"model.builder: unknown builder {model_cfg.builder!r}; known: {sorted(MODEL_BUILDERS)}"
        )
    fn = MODEL_BUILDERS[model_cfg.builder]
    args = _container(model_cfg.args)
    check_kwargs(fn, args, "model.args")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init") % (2**31))
        try:
            return fn(**args)
        except (GraphError, ValueError) as e:
            raise under("model.args", e, args) from e


def loss_for(family: TaskFamily) -> str:
    return "mse" if family.metric == "mse" else "cross_entropy"


def _check_output(graph: ModuleGraph, family: TaskFamily, name: str) -> None:
    """The graph's output is one vector of the family's target width (or one logit per class)."""
    if graph.out_space.shape != (family.out_dim,):
        what = "classes" if family.metric != "mse" else "target width"
        raise ConfigError(
            f"model: graph output {graph.out_space} does not match task family {name!r} "
            f"({what} {family.out_dim}): set the model's output width to {family.out_dim}"
        )


def _enforcing(cfg: DictConfig) -> bool:
    # YAML reads a bare ``off`` as false: both spell "no enforcement".
    return "enforce" in cfg and str(cfg.enforce.mode).lower() not in ("off", "false")


def build_learner(cfg: DictConfig, family: TaskFamily | None = None) -> Learner:
    """The learner a run config names: routed (``router.enabled``), plain MAML family, or one of
    ``ALGO_BUILDERS``."""
    family = family or build_family(cfg.task)
    if "router" in cfg and cfg.router.enabled:  # the descriptor is read only by a router
        check_descriptor(
            family, dim=cfg.router.descriptor_dim, shots=cfg.task.shots, query=cfg.task.query,
            said=cfg.task.args.get("descriptor"),
        )  # fmt: skip
        return _routed_learner(cfg, family)
    known = CHOICES["algo.name"]
    if cfg.algo.name not in known:  # a checkpoint's config, not checked as a file's is
        raise ConfigError(f"algo.name={cfg.algo.name}: expected one of {', '.join(known)}")
    graph = build_graph(cfg.model, cfg.seed)
    if graph.in_space.shape != family.in_space.shape:
        raise ConfigError(
            f"model: graph input {graph.in_space} does not match task family input {family.in_space}"
        )
    if cfg.algo.name not in ALGO_BUILDERS or cfg.algo.name == "learned_opt":
        _check_output(graph, family, cfg.task.family)  # the graph itself predicts the targets
    if cfg.algo.name in ALGO_BUILDERS:
        return _other_learner(cfg, family, graph)
    a = cfg.algo
    unknown = [n for n in a.adapt or [] if n not in graph.graph]
    if unknown:
        raise ConfigError(
            f"algo.adapt={list(a.adapt)}: graph has no node {unknown[0]!r}; nodes: {list(graph.graph)}"
        )
    enforcer = _enforcer(cfg) if _enforcing(cfg) else None
    try:
        return MetaLearner(
            graph=graph,
            algorithm=a.name,
            loss=loss_for(family),
            inner=inner_loop(a),
            adapt=list(a.adapt) if a.adapt is not None else None,
            checkpoint_inner=a.checkpoint_inner,
            per_step_lr=a.per_step_lr,
            per_step_bn=a.per_step_bn,
            enforcer=enforcer,
            eval_guard=a.eval_guard,
        )
    except (ValueError, KeyError) as e:
        raise ConfigError(f"algo: {e}") from e


def _other_learner(cfg: DictConfig, family: TaskFamily, graph: ModuleGraph) -> Learner:
    """An ``ALGO_BUILDERS`` learner (seeded init of its own parameters, as ``build_graph``)."""
    if _enforcing(cfg) and cfg.algo.name != "learned_opt":
        raise ConfigError(
            f"enforce.mode: not available with algo.name={cfg.algo.name}: "
            f"{_NO_ENFORCE.get(cfg.algo.name, 'no per-task weights to certify')}"
        )
    name, args = cfg.algo.name, _container(cfg.algo.args)
    if name == "learned_opt":  # adapts the graph's own weights: enforced as MAML is
        handed = {
            "graph": graph,
            "loss": loss_for(family),
            "eval_inner_steps": cfg.algo.eval_inner_steps,
            "enforcer": _enforcer(cfg) if _enforcing(cfg) else None,
        }
    else:
        classification = family.metric != "mse"
        if any(isinstance(m, TaskBatchNorm2d) for m in graph.modules()):
            raise ConfigError(
                f"model.args.norm: batch norm mixes the queries of a task; {name} needs "
                "norm: group or none (each query is predicted on its own)"
            )
        handed = {"encoder": graph, "targets": family.out_dim, "classification": classification}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "init", name) % (2**31))
        try:
            learner = ALGO_BUILDERS[name](**handed, **args)
        except (TypeError, ValueError) as e:
            raise under("algo.args", e, args) from e
    if name == "annealed_sum":
        _check_descriptor_routing(learner, family, args)
    return learner


def _check_descriptor_routing(learner, family: TaskFamily, args: dict) -> None:
    """``algo.args.routing`` / ``eval_routing: descriptor`` read each task's one-hot (f, g): the
    family must give it (one task drawn), or training would fail at its first meta-batch."""
    said = {k: args[k] for k in ("routing", "eval_routing") if args.get(k) == "descriptor"}
    if not said:
        return
    want = sum(learner.graph.num_candidates.values())
    task = family.sample(1, shots=1, query=1, generator=torch.Generator().manual_seed(0))
    given = 0 if task.descriptor is None else int(task.descriptor.shape[-1])
    if given != want:
        key = next(iter(said))
        raise ConfigError(
            f"algo.args.{key}=descriptor: needs the one-hot (f, g) descriptor of width {want} "
            f"(task.args.descriptor: onehot); {family.name} tasks carry "
            f"{'none' if not given else f'width {given}'}"
        )


# Why an ALGO_BUILDERS learner has no adaptation the enforcer could certify or repair.
_NO_ENFORCE = {
    "incontext": "an in-context learner has no per-task weights (a task enters as context)",
    "cnp": "a conditional neural process has no per-task weights (a task enters as context)",
}


def _enforcer(cfg: DictConfig):
    from metacompose.verify.enforce import build_enforcer

    return build_enforcer(cfg.enforce)


def _routed_learner(cfg: DictConfig, family: TaskFamily) -> Learner:
    """The routed learner; ``router.rules`` hands it rules-valid selection at evaluation."""
    from metacompose.router.build import build_routed_learner

    enforcer = None
    if _enforcing(cfg):
        if cfg.router.routing == "uniform":
            raise ConfigError(
                "enforce.mode: router.routing=uniform mixes every candidate, so a task has no "
                "exported graph to certify; use router.routing: learned or em"
            )
        enforcer = _enforcer(cfg)
    rules_policy = None
    if cfg.router.get("rules"):
        from metacompose.symbolic import RulesError, load_rules
        from metacompose.verify.routing import RulesValidRouting

        try:
            rules = load_rules(cfg.router.rules)
        except RulesError as e:
            raise ConfigError(f"router.rules: {e}") from e

        def rules_policy(pool):
            return RulesValidRouting(pool=pool, rules=rules)

    return build_routed_learner(
        cfg, family, loss=loss_for(family), eval_routing=rules_policy, enforcer=enforcer
    )


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


def build_optimizer(
    optim_cfg: DictConfig, params: Iterable[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    if optim_cfg.name not in OPTIMIZERS:
        raise ConfigError(
            f"optim.name: unknown optimizer {optim_cfg.name!r}; known: {sorted(OPTIMIZERS)}"
        )
    return OPTIMIZERS[optim_cfg.name](params, lr=optim_cfg.lr, weight_decay=optim_cfg.weight_decay)
