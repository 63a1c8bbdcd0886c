"""Check every value of a loaded run config once, on load: choices, finiteness, ranges, limits.

A typo should fail here, in one line naming the file, the key as the user wrote it and the value,
before a run folder exists. Bounds are deliberately loose: they catch signs, zeros where only a
positive value makes sense, and step counts no run could finish (a likely extra digit).
"""

from __future__ import annotations

import inspect
import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from metacompose.config.algo_section import check_algo_values
from metacompose.config.arg_types import check_arg_types, show
from metacompose.config.errors import ConfigError
from metacompose.config.limits import (
    ENFORCE_TIMEOUT_LIMIT,
    INNER_LIMIT,
    LR_LIMIT,
    ROUTER_COPIES_LIMIT,
    ROUTER_RANK_LIMIT,
    ROUTER_WEIGHT_LIMIT,
    ROUTER_WIDTH_LIMIT,
    SIZE_LIMIT,
    STEPS_LIMIT,
    TAU_RANGE,
)
from metacompose.config.schema import CADENCES, RouterConfig

log = logging.getLogger(__name__)

PRECISIONS = (
    "32-true", "32", "64-true", "64", "bf16-mixed", "bf16-true", "bf16", "16-mixed", "16-true",
    "16", "transformer-engine", "transformer-engine-float16",
)  # fmt: skip

# Literal-like tables of the string choices. The owners keep the same tuples (a test checks them):
# metacompose.algorithms.ALGORITHMS, metacompose.router.build.{ROUTING_MODES, EVAL_ROUTING}
# (the get_args of their Literal types),
# metacompose.verify.enforce.{MODES, EVERY}, metacompose.training.loggers.LOGGERS, metacompose.build.OPTIMIZERS.
CHOICES: dict[str, tuple[str, ...]] = {
    "algo.name": (
        "maml",
        "fomaml",
        "metasgd",
        "anil",
        "reptile",
        "incontext",
        "cnp",
        "learned_opt",
        "annealed_sum",
    ),
    "data.sharding": ("per_rank", "global"),
    "optim.name": ("adam", "adamw", "sgd"),
    "trainer.logger": ("csv", "tensorboard", "none"),
    "router.routing": ("learned", "uniform", "em"),
    "router.eval_routing": ("router", "search", "topk"),
    "enforce.mode": ("off", "check", "reject", "project"),
    "enforce.tier": ("fast", "refine", "exact"),
    "enforce.every": ("end", "step"),
    # Lightning's names (lightning.pytorch.accelerators / strategies registries, precision inputs).
    "trainer.accelerator": ("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
    "trainer.precision": PRECISIONS,
}


# the learners whose adaptation is gradient steps on the graph (an InnerLoop)
GRADIENT_LEARNERS = ("maml", "fomaml", "anil", "reptile", "metasgd")


def strategies() -> tuple[str, ...]:
    """``auto`` and the names in Lightning's strategy registry (imported on first use)."""
    from lightning.pytorch.strategies import StrategyRegistry

    return ("auto", *StrategyRegistry.available_strategies())


def validate(cfg: DictConfig, source: str | Path) -> None:
    """Raise :class:`ConfigError` for the first bad value of a resolved run config, ``algo.args``
    against its learner included (:func:`metacompose.config.algo_section.check_algo_values`)."""
    c = _Checker(cfg, str(source))
    for key, options in CHOICES.items():
        c.choice(key, options)
    c.choice(
        "trainer.strategy",
        strategies(),
        shown="auto or a Lightning strategy (ddp, ddp_spawn, fsdp, ...)",
    )
    c.integer("seed", lo=0, hi=2**63 - 1)
    c.text("out_dir")
    c.run_name("name")
    c.text("task.family")
    c.integer("task.shots", lo=1, hi=SIZE_LIMIT)
    c.integer("task.query", lo=1, hi=SIZE_LIMIT)
    c.text("model.builder")
    # A gradient-based learner takes at least one inner step (its InnerLoop's rule), and a zero
    # step size adapts nothing (Meta-SGD's learned step sizes start there and stay there).
    gradient = cfg.router.enabled or cfg.algo.name in GRADIENT_LEARNERS
    c.integer("algo.inner_steps", lo=1 if gradient else 0, hi=INNER_LIMIT)
    c.real("algo.inner_lr", lo=0.0, lo_open=gradient, hi=LR_LIMIT)
    c.integer("algo.eval_inner_steps", lo=0, hi=INNER_LIMIT)
    c.names("algo.adapt")
    c.choice("algo.vectorize", ("True", "False", "auto"), shown="true, false or auto")
    c.integer("algo.chunk_size", lo=1, hi=SIZE_LIMIT, optional=True)
    c.choice("algo.eval_guard", ("True", "False", "auto"), shown="true, false or auto")
    c.integer("data.meta_batch_size", lo=1, hi=SIZE_LIMIT)
    c.integer("data.val_tasks", lo=1, hi=SIZE_LIMIT)
    c.integer("data.task_chunk_size", lo=1, hi=SIZE_LIMIT, optional=True)
    c.real("data.memory_budget_mb", lo=0.0, lo_open=True, optional=True)
    if cfg.algo.per_step_lr and (
        cfg.router.enabled or cfg.algo.name not in ("maml", "fomaml", "anil")
    ):
        c.fail("algo.per_step_lr", True, "needs algo.name maml, fomaml or anil, without router")
    if cfg.algo.per_step_bn and (
        cfg.router.enabled or cfg.algo.name not in ("maml", "fomaml", "anil", "metasgd")
    ):
        c.fail("algo.per_step_bn", True, "needs algo.name maml, fomaml, anil or metasgd, no router")
    c.real("optim.lr", lo=0.0, lo_open=True, hi=LR_LIMIT)
    c.real("optim.weight_decay", lo=0.0, hi=LR_LIMIT)
    c.real("optim.grad_clip", lo=0.0, lo_open=True, optional=True)
    c.integer("trainer.max_steps", lo=1, hi=STEPS_LIMIT)
    c.devices("trainer.devices")
    c.integer("trainer.num_nodes", lo=1, hi=10**4)
    for key in ("val_check_interval", "log_every_n_steps", "checkpoint_every_n_steps"):
        c.integer(f"trainer.{key}", lo=1, hi=STEPS_LIMIT)
    c.integer("trainer.max_bad_tasks", lo=0, optional=True)
    c.integer("trainer.cpu_threads", lo=1, hi=4096, optional=True)
    per_call = cfg.trainer.steps_per_call
    if per_call != "auto" and (type(per_call) is not int or not 1 <= per_call <= STEPS_LIMIT):
        c.fail(
            "trainer.steps_per_call", per_call, f"expected auto or an integer in 1..{STEPS_LIMIT}"
        )
    for key in CADENCES if per_call != "auto" else ():
        if cfg.trainer[key] % per_call:
            c.fail(
                "trainer.steps_per_call", per_call, f"must divide trainer.{key}={cfg.trainer[key]}"
            )
    _check_router(c, cfg)
    c.real("enforce.timeout_s", lo=0.0, lo_open=True, hi=ENFORCE_TIMEOUT_LIMIT)
    c.integer("enforce.max_halvings", lo=0, hi=64)
    if cfg.enforce.mode != "off" and not cfg.enforce.spec:
        raise ConfigError(f"{source}: enforce.spec: required when enforce.mode={cfg.enforce.mode}")
    c.shot_list("report.shots")
    _check_restart(c, cfg)
    _warn_short_anneal(cfg, str(source))
    check_builder_args(cfg, source)
    check_algo_values(cfg, source)


def _warn_short_anneal(cfg: DictConfig, source: str) -> None:
    """One warning line when ``annealed_sum`` trains for fewer meta-iterations than its
    temperature takes to fall: training then stops at a temperature above ``tau_end``."""
    args, steps = cfg.algo.args, cfg.trainer.max_steps
    n = args.get("anneal_steps") if cfg.algo.name == "annealed_sum" else None
    if not (isinstance(n, int) and isinstance(steps, int) and 0 < steps < n):
        return
    t0, t1 = args.get("tau_start"), args.get("tau_end")
    ends = (f"ends at {t0 * (t1 / t0) ** (steps / n):.3g}, not tau_end {t1:g}"
            if isinstance(t0, float) and isinstance(t1, float) and t0 > 0 and t1 > 0
            else "never reaches tau_end")  # fmt: skip
    log.warning("%s: algo.args.anneal_steps=%d > trainer.max_steps=%d: the annealing temperature "
                "%s (lower algo.args.anneal_steps with trainer.max_steps)", source, n, steps, ends)  # fmt: skip


def _check_restart(c: _Checker, cfg: DictConfig) -> None:
    r = cfg.restart
    if not isinstance(r.order, str) or set(r.order) - {"f", "g", "p", "d"}:
        c.fail("restart.order", r.order,
               "a string of f, g, p (polish) and d (distil), e.g. fg or fgpd, or ''")  # fmt: skip
    if r.order and cfg.algo.name != "annealed_sum":
        c.fail("restart.order", r.order, f"needs algo.name annealed_sum (not {cfg.algo.name})")
    c.integer("restart.restarts", lo=1, hi=ROUTER_COPIES_LIMIT)
    c.integer("restart.steps", lo=1, hi=STEPS_LIMIT)
    c.integer("restart.anneal", lo=1, hi=STEPS_LIMIT)
    if r.anneal > r.steps:
        c.fail("restart.anneal", r.anneal, f"more than restart.steps={r.steps}")
    c.real("restart.within", lo=1.0, hi=LR_LIMIT)
    c.integer("restart.fit_tasks", lo=1, hi=SIZE_LIMIT)
    c.integer("restart.agree_tasks", lo=1, hi=SIZE_LIMIT)
    c.integer("restart.distil_tasks", lo=2, hi=SIZE_LIMIT)
    c.integer("restart.seed", lo=0, hi=2**63 - 1)
    c.integer("restart.polish_steps", lo=1, hi=STEPS_LIMIT)
    c.real("restart.polish_lr", lo=0.0, lo_open=True, hi=LR_LIMIT)


def _check_router(c: _Checker, cfg: DictConfig) -> None:
    """The ``router`` section's sizes, temperatures, weights and EM settings."""
    for key in ("encoder_hidden", "embedding", "hidden"):
        c.integer(f"router.{key}", lo=1, hi=ROUTER_WIDTH_LIMIT)
    c.integer("router.descriptor_dim", lo=0, hi=ROUTER_WIDTH_LIMIT)
    c.integer("router.low_rank", lo=0, hi=ROUTER_RANK_LIMIT)
    c.integer("router.anchors", lo=0, hi=ROUTER_COPIES_LIMIT)
    c.descriptor_slots("router.descriptor_slots", dim=cfg.router.descriptor_dim)
    if cfg.router.descriptor_dim and not cfg.router.enabled:  # on load only: never a checkpoint
        c.fail("router.descriptor_dim", cfg.router.descriptor_dim,
               "read only by the router (router.enabled: false); remove it")  # fmt: skip
    for key in ("tau_start", "tau_end"):
        c.real(f"router.{key}", lo=TAU_RANGE[0], hi=TAU_RANGE[1])
    start, end = cfg.router.tau_start, cfg.router.tau_end
    if cfg.router.enabled and end > start:  # an anneal cools: likely the two swapped
        if end == RouterConfig.tau_end and start != RouterConfig.tau_start:  # start was written
            c.fail("router.tau_start", start,
                   f"must be >= router.tau_end={end} (the anneal lowers the temperature)")  # fmt: skip
        c.fail("router.tau_end", end,
               f"must be <= router.tau_start={start} (the anneal lowers the temperature)")  # fmt: skip
    c.integer("router.tau_steps", lo=1, hi=STEPS_LIMIT)
    for key in ("balance_weight", "entropy_weight", "search_weight", "em_prior_weight"):
        c.real(f"router.{key}", lo=0.0, hi=ROUTER_WEIGHT_LIMIT)
    c.real("router.anchor_init", lo=0.0, hi=LR_LIMIT)
    c.integer("router.search_steps", lo=0, hi=STEPS_LIMIT)
    c.real("router.em_capacity", lo=0.0)
    if 0 < cfg.router.em_capacity < 1:
        c.fail("router.em_capacity", cfg.router.em_capacity, "expected 0 (off) or >= 1")
    c.integer("router.em_capacity_steps", lo=0, hi=STEPS_LIMIT)
    c.integer("router.eval_top_k", lo=1, hi=ROUTER_COPIES_LIMIT)


def check_builder_args(cfg: DictConfig, source: str | Path) -> None:
    """``task.family`` and ``model.builder`` exist, and their ``args`` bind to their signatures
    with values of the annotated types (nothing is built)."""
    from omegaconf import OmegaConf

    from metacompose.models import MODEL_BUILDERS
    from metacompose.tasks import FAMILIES

    sections = [("task", "family", FAMILIES)]
    if not cfg.router.enabled:  # a routed learner builds its pool from router.template instead
        sections.append(("model", "builder", MODEL_BUILDERS))
    for section, key, table in sections:
        name = cfg[section][key]
        if name not in table:
            raise ConfigError(
                f"{source}: {section}.{key}={name}: unknown; known: {', '.join(sorted(table))}"
            )
        args = OmegaConf.to_container(cfg[section].args, resolve=True)
        try:
            check_kwargs(table[name], args, f"{section}.args")
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from e


def check_kwargs(fn: Any, kwargs: dict[str, Any], where: str) -> None:
    """Bind ``kwargs`` to ``fn``'s signature without calling it, and check each value against
    ``fn``'s type annotations; a one-line error naming ``where.key`` and the value."""
    sig = inspect.signature(fn)
    params = sig.parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key in kwargs:
            if key not in params:
                known = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
                raise ConfigError(
                    f"{where}.{key}: unknown argument of {fn.__name__}; known: {known}"
                )
    try:
        sig.bind(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from e
    check_arg_types(fn, kwargs, where)


class _Checker:
    """Reads ``key`` from the config and fails with ``SOURCE: key=value: problem``."""

    def __init__(self, cfg: DictConfig, source: str) -> None:
        self.cfg, self.source = cfg, source

    def get(self, key: str) -> Any:
        node: Any = self.cfg
        for part in key.split("."):
            node = node[part]
        return node

    def fail(self, key: str, value: Any, problem: str) -> None:
        raise ConfigError(f"{self.source}: {key}={show(value)}: {problem}")

    def choice(self, key: str, options: tuple[str, ...], shown: str | None = None) -> None:
        value = self.get(key)
        if str(value) not in options:
            self.fail(key, value, f"expected {shown or 'one of ' + ', '.join(options)}")

    def integer(self, key: str, *, lo: int, hi: int | None = None, optional: bool = False) -> None:
        value = self.get(key)
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, value, "expected an integer" + (" or null" if optional else ""))
        if value < lo or (hi is not None and value > hi):
            bound = f">= {lo}" if hi is None else f"in {lo}..{hi}"
            self.fail(key, value, f"must be {bound}" + (" (or null)" if optional else ""))

    def real(
        self,
        key: str,
        *,
        lo: float,
        lo_open: bool = False,
        hi: float | None = None,
        optional: bool = False,
    ) -> None:
        value = self.get(key)
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, value, "expected a number")
        if not math.isfinite(value):
            self.fail(key, value, "must be finite")
        if value < lo or (lo_open and value == lo):
            self.fail(key, value, f"must be {'>' if lo_open else '>='} {lo:g}")
        if hi is not None and value > hi:
            self.fail(key, value, f"must be <= {hi:g}")

    def text(self, key: str) -> None:
        value = self.get(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, value, "must be a non-empty string")

    def run_name(self, key: str) -> None:
        value = self.get(key)
        if value is None:
            return
        if not value.strip() or value in (".", "..") or "/" in value or "\\" in value:
            self.fail(key, value, "a run folder name: non-empty, no '/', not '.' or '..'")

    def names(self, key: str) -> None:
        value = self.get(key)
        if value is None:
            return
        if not all(isinstance(v, str) and v for v in value):
            self.fail(key, list(value), "expected a list of node names (or null)")

    def devices(self, key: str) -> None:
        value = self.get(key)
        if isinstance(value, (list, tuple, ListConfig)):
            ids = list(value)
            ok = ids and all(type(i) is int and i >= 0 for i in ids) and len(set(ids)) == len(ids)
            if not ok:
                self.fail(key, ids, "a device-id list must be distinct integers >= 0")
            return
        if isinstance(value, str) and (value == "auto" or value.strip().lstrip("-").isdigit()):
            value = -1 if value == "auto" else int(value)
        if type(value) is not int or not (value >= 1 or value == -1):
            self.fail(key, value, "expected a count >= 1, -1 or auto (all), or a list of ids")

    def descriptor_slots(self, key: str, *, dim: int) -> None:
        for slot, span in self.get(key).items():
            span = list(span)
            ok = len(span) == 2 and all(type(s) is int for s in span)
            if not ok or not 0 <= span[0] < span[1] <= dim:
                self.fail(
                    f"{key}.{slot}", span, f"expected [start, stop] with 0 <= start < stop <= {dim}"
                )

    def shot_list(self, key: str) -> None:
        value = list(self.get(key))
        if not value or not all(type(v) is int and 1 <= v <= SIZE_LIMIT for v in value):
            self.fail(key, value, f"expected a non-empty list of integers in 1..{SIZE_LIMIT}")
