"""What ``--resume`` starts from: a trusted checkpoint of a run made from the same config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from metacompose.config import ConfigError
from metacompose.config.schema import RunConfig
from metacompose.tasks.provenance import changed_data
from metacompose.training.checkpoint_io import CheckpointError, checkpoint_file, safe_load

CHECKPOINT_FORMAT = "metacompose.checkpoint/1"
# the checkpoint key of the block restarts done after the last meta-iteration (restart_stage)
RESTART_RECORD = "metacompose_restart_banks"
# Keys a resumed run may change: where the run lives, how long it goes on, whether a bar is drawn.
MAY_CHANGE_ON_RESUME = (
    "out_dir",
    "name",
    "trainer.max_steps",
    "trainer.enable_progress_bar",
    "trainer.steps_per_call",  # the same run, bit for bit, at any count
)


@dataclass(frozen=True)
class ResumePoint:
    """A checkpoint to continue from.

    Attributes:
        checkpoint: the ``.ckpt`` file.
        run_dir: the run folder it belongs to.
        step: its global step (optimizer steps done).
        config: the resolved config stored in it.
        restart_phases: block-restart phases it records as done (``restart.order``).
        data: the provenance of the family it was trained on (``None``: a family built from its
            config, or a checkpoint from before it was stored; :mod:`metacompose.tasks.provenance`).
    """

    checkpoint: Path
    run_dir: Path
    step: int
    config: dict[str, Any]
    restart_phases: int = 0
    data: dict[str, Any] | None = None


def check_meta_section(path: Path, meta: Any) -> None:
    """Refuse a checkpoint whose ``metacompose`` section is missing, of another format version,
    or without its config (damaged)."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: not a metacompose checkpoint (no 'metacompose' section)")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {meta.get('format')!r}; this version reads "
            f"{CHECKPOINT_FORMAT!r}"
        )
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(
            f"{path}: damaged checkpoint: its 'metacompose' section has no config"
        )


def load_resume_point(resume: str | Path) -> ResumePoint:
    """The checkpoint of a run folder (``checkpoints/last.ckpt``) or a ``.ckpt`` file to resume.

    The checkpoint is read with ``weights_only=True``, so a hostile file is refused before anything
    is built.

    Raises:
        CheckpointError: missing, corrupt, hostile or not a metacompose training checkpoint.
    """
    path = Path(resume)
    no_ckpt = path.is_dir() and not (path / "checkpoints" / "last.ckpt").exists()
    if no_ckpt and (path / "config.yaml").is_file():
        raise CheckpointError(
            f"{path}: the run holds no checkpoint yet (it stopped before its first one); start "
            "it again without --resume"
        )
    ckpt = checkpoint_file(path)
    state = safe_load(ckpt)
    meta = state.get("metacompose")
    check_meta_section(ckpt, meta)
    if "loops" not in state or "optimizer_states" not in state:
        raise CheckpointError(f"{ckpt}: holds weights only; training cannot resume from it")
    run_dir = ckpt.parent.parent
    if ckpt.parent.name != "checkpoints" or not (run_dir / "config.yaml").is_file():
        raise CheckpointError(
            f"{ckpt}: not a checkpoint of a run folder (RUN/checkpoints/*.ckpt beside "
            "RUN/config.yaml); --resume continues a run in its own folder: give that folder"
        )
    config = meta["config"]
    check_own_run(ckpt, run_dir, config)
    record = state.get(RESTART_RECORD)
    phases = record.get("phases") if isinstance(record, dict) else None
    return ResumePoint(
        checkpoint=ckpt, run_dir=run_dir, step=int(state.get("global_step", 0)), config=config,
        restart_phases=len(phases) if isinstance(phases, list) else 0,
        data=meta["data"] if isinstance(meta.get("data"), dict) else None,
    )  # fmt: skip


def check_own_run(ckpt: Path, run_dir: Path, config: dict[str, Any]) -> None:
    """Refuse a checkpoint of another run copied into ``run_dir``: its stored config must be the
    folder's ``config.yaml`` (but :data:`MAY_CHANGE_ON_RESUME`), or resuming would overwrite it."""
    path = run_dir / "config.yaml"
    try:
        own = OmegaConf.load(path)
        if not isinstance(own, DictConfig) or not own:
            raise ValueError("empty, or not a mapping")
        diff = config_differences(config, own)
    except Exception as e:  # unreadable or damaged: not a folder this run wrote as it is
        reason = " ".join(str(e).split())[:120]
        raise CheckpointError(f"{path}: damaged run config ({type(e).__name__}: {reason})") from e
    if diff:
        raise CheckpointError(
            f"{ckpt}: holds another run than {run_dir} (its config differs from "
            f"{run_dir / 'config.yaml'}: {diff[0]}); resume the run the checkpoint came from"
        )


def resolve_resume(resume: str | Path) -> tuple[Path, Path, int]:
    """``(checkpoint, run folder, global step)`` of a run folder or checkpoint to resume."""
    point = load_resume_point(resume)
    return point.checkpoint, point.run_dir, point.step


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(
            _flatten(value, f"{prefix}{key}." if isinstance(value, dict) else f"{prefix}{key}")
        )
    return flat


def config_differences(stored: dict[str, Any], cfg: DictConfig) -> list[str]:
    """``"key: stored -> given"`` for every key (but :data:`MAY_CHANGE_ON_RESUME`) that differs; a
    key the stored config lacks (a run from before the key existed) counts at its default."""
    given = _flatten(OmegaConf.to_container(cfg, resolve=True))
    defaults = _flatten(OmegaConf.to_container(OmegaConf.structured(RunConfig)))
    old = {**{k: v for k, v in defaults.items() if k in given}, **_flatten(stored)}
    return [
        f"{key}: {old.get(key, '<unset>')!r} -> {given.get(key, '<unset>')!r}"
        for key in sorted(set(old) | set(given), key=str)
        if key not in MAY_CHANGE_ON_RESUME and old.get(key, "<unset>") != given.get(key, "<unset>")
    ]


def check_resumable(point: ResumePoint, cfg: DictConfig) -> None:
    """Refuse to resume ``point`` under a config other than the one it was trained with, or with
    nothing left to do (no meta-iteration, no block-restart phase).

    Only :data:`MAY_CHANGE_ON_RESUME` may differ (every checkpoint stores its config:
    :func:`check_meta_section`).

    Raises:
        ConfigError: names the first differing keys (checkpoint value -> given value), or says
            that ``trainer.max_steps`` is not above the checkpoint's step.
    """
    done, order = point.restart_phases, cfg.restart.order
    if done and cfg.trainer.max_steps != point.step:  # restarted banks are no training state
        left = f"resume with trainer.max_steps={point.step}" if done < len(order) else (
            "nothing left to do; start a new run to train longer")  # fmt: skip
        raise ConfigError(
            f"--resume {point.run_dir}: trainer.max_steps={cfg.trainer.max_steps}: the block "
            f"restarts after meta-iteration {point.step} have begun ({done} of {len(order)} "
            f"phases done), so the run cannot train on; {left}"
        )
    if cfg.trainer.max_steps < point.step or (
        cfg.trainer.max_steps == point.step and done >= len(order)
    ):
        how = ("its block restarts are done too: start a new run to train longer" if done else
               "raise trainer.max_steps to train on")  # fmt: skip
        raise ConfigError(
            f"--resume {point.run_dir}: the checkpoint is at meta-iteration {point.step} and "
            f"trainer.max_steps={cfg.trainer.max_steps}: nothing left to do ({how})"
        )
    diff = config_differences(point.config, cfg)
    if diff:
        more = f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""
        raise ConfigError(
            f"--resume {point.run_dir}: the run was trained with another config "
            f"({'; '.join(diff[:3])}{more}); resume with its own config, e.g. "
            f"{point.run_dir / 'config.yaml'} (only trainer.max_steps may be raised)"
        )


def check_same_data(point: ResumePoint | None, family: object, *, source: str) -> None:
    """Refuse to resume ``point`` on a family read from data that differs from the one it was
    trained on (a spec or CSV edited since: other groups, other rows).

    Raises:
        ConfigError: says what differs (:func:`metacompose.tasks.provenance.changed_data`).
    """
    why = changed_data(point.data, family, source=source) if point is not None else None
    if why:
        raise ConfigError(f"--resume {point.run_dir}: {why}")
