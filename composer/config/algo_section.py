"""The ``algo`` section against the learner ``algo.name`` builds: its ``algo.args`` bind to that
learner's builder within the size limits, a learned optimizer's unroll is truncated inside it
(:func:`check_algo_values`, part of :func:`metacompose.config.validate`), and no key the learner
never reads was set by the user (:func:`check_algo_section`, which needs the files' layers).

Checked on load (:func:`metacompose.config.load.load_config`), never on a checkpoint's stored
config, so runs made before a check existed still load.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from metacompose.config.arg_types import check_arg_types, show
from metacompose.config.errors import ConfigError
from metacompose.config.limits import (
    ALGO_SCALE_LIMITS,
    ALGO_SIZE_LIMITS,
    CONTEXT_WEIGHTS_LIMIT,
    INNER_LIMIT,
)

log = logging.getLogger(__name__)

# algo.name -> the algo keys its learner never reads, and what the user should do instead. A
# shared base file may set them for its MAML configs: only a value the user set is refused.
_NO_INNER_LOOP = "has no inner loop (it reads a task's support set in one pass); remove it"
UNREAD: dict[str, dict[str, str]] = {
    "incontext": dict.fromkeys(("inner_steps", "adapt", "inner_lr"), _NO_INNER_LOOP),
    "cnp": dict.fromkeys(("inner_steps", "adapt", "inner_lr"), _NO_INNER_LOOP),
    "annealed_sum": {
        key: "fits each task in closed form (no inner loop); remove it"
        for key in ("inner_steps", "adapt", "inner_lr", "first_order")
    },
    "learned_opt": {
        "inner_steps": "unrolls algo.args.horizon steps per meta-iteration; set that instead",
        "adapt": "adapts every weight of the graph; remove it",
    },
}


def check_algo_section(
    cfg: DictConfig,
    inherited: DictConfig,
    source: str | Path,
    *,
    written: DictConfig,
    composed: bool,
) -> None:
    """Raise :class:`ConfigError` (``SOURCE: algo.KEY=VALUE: problem``) for a key of the ``algo``
    section that the learner of ``algo.name`` never reads, set by the user (its values were
    checked by :func:`check_algo_values`).

    Args:
        cfg: the loaded, validated config.
        inherited: the schema's defaults merged with the config's base files (``defaults:``)
            only: what the config would be without its own file and the overrides.
        written: the config of the files alone (before the command-line overrides).
        composed: the config file has ``defaults:`` (an experiment file; a run folder's resolved
            ``config.yaml`` has none).
    """
    check_unread(cfg, inherited, source, written=written, composed=composed)


def check_algo_values(cfg: DictConfig, source: str | Path) -> None:
    """``algo.args`` bind to the learner of ``algo.name`` (:func:`check_algo_args`), its sizes
    within ``ALGO_SIZE_LIMITS`` (:func:`check_algo_sizes`), a learned optimizer's unroll within its
    horizon (:func:`check_unroll`): ``SOURCE: algo.args.KEY=VALUE: problem``."""
    check_algo_args(cfg, source)
    args = OmegaConf.to_container(cfg.algo.args, resolve=True)
    check_algo_sizes(cfg.algo.name, args, source)
    if cfg.algo.name == "learned_opt":
        check_unroll(args, source)


def check_algo_args(cfg: DictConfig, source: str | Path) -> None:
    """``algo.args`` bind to the builder of ``algo.name`` (metacompose.algorithms.builders), less the
    arguments the run config hands it; the MAML family takes none."""
    from metacompose.algorithms.builders import ALGO_BUILDERS, HANDED_ARGS

    args = OmegaConf.to_container(cfg.algo.args, resolve=True)
    name = cfg.algo.name
    if name not in ALGO_BUILDERS:
        if args:
            raise ConfigError(f"{source}: algo.args: {name} takes no algo.args, got {sorted(args)}")
        return
    if cfg.router.enabled:
        raise ConfigError(f"{source}: algo.name={name}: not available with router.enabled")
    fn = ALGO_BUILDERS[name]
    known = [k for k in inspect.signature(fn).parameters if k not in HANDED_ARGS]
    for key in args:
        if key not in known:
            raise ConfigError(
                f"{source}: algo.args.{key}: unknown argument of {name}; known: {known}"
            )
    try:
        check_arg_types(fn, args, "algo.args")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from e


def check_algo_sizes(name: str, args: dict[str, Any], source: str | Path) -> None:
    """Each size of ``ALGO_SIZE_LIMITS[name]`` in ``args`` (an integer, or a list of them) and each
    scale of ``ALGO_SCALE_LIMITS[name]`` at most its limit, and an incontext / cnp predictor of at
    most ``CONTEXT_WEIGHTS_LIMIT`` weights: a transformer of 10^5 layers does not fail, it hangs at
    build. Sizes below 1 and types are the builder's and :func:`check_algo_args`' to refuse."""
    limits = ALGO_SIZE_LIMITS.get(name, {}) | ALGO_SCALE_LIMITS.get(name, {})
    for key, limit in limits.items():
        value = args.get(key)
        if any(type(v) in (int, float) and v > limit for v in _numbers(value)):
            raise ConfigError(
                f"{source}: algo.args.{key}={show(value)}: must be <= {limit:g} (algo.name={name})"
            )
    weights = context_weights(name, args)
    if weights > CONTEXT_WEIGHTS_LIMIT:
        keys = ", ".join(f"{k}={args[k]}" for k in ALGO_SIZE_LIMITS[name] if k in args)
        raise ConfigError(
            f"{source}: algo.args: {keys}: {weights:,} weights in the {name} predictor; "
            f"must be <= {CONTEXT_WEIGHTS_LIMIT:,}"
        )


def context_weights(name: str, args: dict[str, Any]) -> int:
    """About how many weights the incontext / cnp predictor of ``args`` holds (0 for others):
    ``layers x (4 width^2 + 2 width ff)``, ``2 layers hidden^2``."""
    if name not in ("incontext", "cnp"):
        return 0
    from metacompose.algorithms.builders import ALGO_BUILDERS

    defaults = inspect.signature(ALGO_BUILDERS[name]).parameters
    size = {k: args.get(k, defaults[k].default) for k in ALGO_SIZE_LIMITS[name]}
    if not all(type(v) is int and v > 0 for v in size.values()):
        return 0  # the builder's to refuse
    if name == "cnp":
        return 2 * size["layers"] * size["hidden"] ** 2
    return size["layers"] * (4 * size["width"] ** 2 + 2 * size["width"] * size["ff"])


def _numbers(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


# learned optimizer arguments that count inner steps (bounded as algo.inner_steps is)
UNROLL_STEPS = ("horizon", "truncation", "warmup", "random_net_unroll")


def check_unroll(args: dict[str, Any], source: str | Path) -> None:
    """A learned optimizer's step counts are at most ``INNER_LIMIT`` (a warm-up of 10^9 steps
    never ends), and its ``truncation`` at most its ``horizon`` (or null: none): a longer one
    places no truncation point in the unroll, which is not what it says."""
    from metacompose.algorithms.learned_opt_builder import learned_opt_learner

    for key in UNROLL_STEPS:
        value = args.get(key)
        if isinstance(value, int) and value > INNER_LIMIT:
            raise ConfigError(f"{source}: algo.args.{key}={value}: must be <= {INNER_LIMIT}")
    defaults = inspect.signature(learned_opt_learner).parameters
    horizon = args.get("horizon", defaults["horizon"].default)
    truncation = args.get("truncation", defaults["truncation"].default)
    if truncation is None or horizon < 1 or truncation <= horizon:
        return  # a horizon below 1 is the builder's to refuse
    if "truncation" in args:
        raise ConfigError(
            f"{source}: algo.args.truncation={truncation}: longer than algo.args.horizon="
            f"{horizon}; set it <= {horizon}, or null for no truncation"
        )
    raise ConfigError(
        f"{source}: algo.args.horizon={horizon}: shorter than algo.args.truncation={truncation} "
        f"(its default); set truncation <= {horizon}, or null for no truncation"
    )


def check_unread(
    cfg: DictConfig,
    inherited: DictConfig,
    source: str | Path,
    *,
    written: DictConfig,
    composed: bool,
) -> None:
    """A key of ``UNREAD[algo.name]`` that the user set is refused: set by an override, or by an
    experiment file (with ``defaults:``) that also chose this learner. Set otherwise (a run
    folder's resolved ``config.yaml``, or a file written for another learner whose ``algo.name`` an
    override changed) it is only named in a warning, so that such files still load."""
    for key, problem in UNREAD.get(cfg.algo.name, {}).items():
        value = _plain(cfg.algo[key])
        in_files = _plain(written.algo[key])
        before = _plain(
            OmegaConf.select(inherited, f"algo.{key}", throw_on_resolution_failure=False)
        )
        shown = f"[{', '.join(map(str, value))}]" if isinstance(value, list) else value
        message = f"{source}: algo.{key}={shown}: algo.name={cfg.algo.name} {problem}"
        by_file = composed and written.algo.name == cfg.algo.name
        if value != in_files or (value != before and by_file):
            raise ConfigError(message)
        if value != before:
            log.warning("%s (ignored)", message)


def _plain(value: Any) -> Any:
    """A comparable value; booleans as YAML writes them (``true``), as the user typed them."""
    if isinstance(value, bool):
        return str(value).lower()
    return list(value) if isinstance(value, ListConfig) else value
