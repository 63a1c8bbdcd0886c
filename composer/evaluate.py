"""Evaluate a checkpoint: adapt to fresh meta-test tasks and report the query metric per step."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from metacompose.algorithms import Learner
from metacompose.algorithms.learner import candidate_slots
from metacompose.build import build_family, build_learner
from metacompose.config.schema import RunConfig
from metacompose.graph import GraphError
from metacompose.progress import progress
from metacompose.reroute import RerouteError, builds_as_trained, reroute, reroute_failed
from metacompose.router.metrics import routing_purity, set_purity
from metacompose.stats import ci95_over_tasks
from metacompose.tasks.base import (
    TaskBatch,
    TaskFamily,
    derive_seed,
    factors_of,
    interchangeable_slots,
    subsets_of,
)
from metacompose.tasks.fingerprint import tasks_digest
from metacompose.tasks.provenance import changed_data, data_source
from metacompose.training.checkpoint_io import CheckpointError, checkpoint_file, safe_load
from metacompose.training.restart_record import record_in
from metacompose.training.resume import check_meta_section


@dataclass
class EvalResult:
    """Query metric after 0..S inner steps on ``n_tasks`` meta-test tasks (mean and 95% interval).

    ``subset``: the family's task subset drawn (e.g. ``"held_out"``), ``None`` for its default;
    ``routing``: routing purity on the same tasks when the learner routes and the family exposes
    its true structure (:func:`metacompose.router.metrics.routing_purity`), else ``None``. Both
    are left out of the JSON when ``None``.
    """

    task_family: str
    metric: str
    shots: int
    n_tasks: int
    steps: list[int]
    mean: list[float]
    ci95: list[float]
    subset: str | None = None
    routing: dict | None = None
    seed: int | None = None  # of the meta-test task stream
    query: int | None = None
    tasks_digest: str | None = None  # of the tasks drawn (metacompose.tasks.fingerprint)
    # (S + 1, N) per-task metric, for statistics at another level (e.g. over groups); in JSON
    # only its last step, as "last_per_task" (6 significant digits: paired comparisons)
    per_task: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def to_json_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "per_task"}
        if self.per_task is not None:
            data["last_per_task"] = [float(f"{v:.6g}") for v in self.per_task[-1].tolist()]
        return {k: v for k, v in data.items() if v is not None}

    def table(self) -> str:
        lines = [f"{'step':>4}  {'query ' + self.metric:>14}  {'± 95% CI':>10}"]
        for s, m, c in zip(self.steps, self.mean, self.ci95):
            lines.append(f"{s:>4}  {m:>14.4f}  {c:>10.4f}")
        if self.routing:
            lines.append(
                f"routing purity over {self.routing['tasks']} tasks: "
                f"joint NMI {self.routing['joint_nmi']:.3f}"
            )
            lines.append(f"{'slot':>8}  {'true':>6}  {'NMI':>6}  {'matched acc':>11}")
            for slot, r in self.routing["slots"].items():
                lines.append(
                    f"{slot:>8}  {r['factor']:>6}  {r['nmi']:>6.3f}  {r['accuracy']:>11.3f}"
                )
            if "as_set" in self.routing:  # interchangeable slots: either bank may hold either
                a = self.routing["as_set"]
                per = ", ".join(f"{f} {v:.3f}" for f, v in a["accuracy"].items())
                lines.append(
                    f"as a set (slots interchangeable): matched acc {per}, "
                    f"both {a['joint_accuracy']:.3f}"
                )
        return "\n".join(lines)


class DataChanged(Exception):
    """The data a checkpoint's family reads is not the data it was trained on."""


def load_checkpoint(path: str | Path) -> tuple[Learner, DictConfig, TaskFamily]:
    """Rebuild the meta-learner of a run from its checkpoint alone (loaded with weights_only=True).

    Raises:
        CheckpointError: unreadable, hostile, not a metacompose checkpoint, or weights holding
            NaN/Inf (the message names the first such tensor).
    """
    learner, cfg, family, _ = load_with_restarts(path)
    return learner, cfg, family


def load_with_restarts(
    path: str | Path, *, routing: str | None = None
) -> tuple[Learner, DictConfig, TaskFamily, dict | None]:
    """:func:`load_checkpoint` and the checkpoint's block-restart record (``None``: none), both
    from one read of the file: a run that saves ``last.ckpt`` while a command reads it cannot pair
    one checkpoint's banks with another's record. ``routing``: evaluate routed this way instead of
    as the config says (:func:`~metacompose.reroute.reroute`; ``None``: as trained)."""
    path = checkpoint_file(path)
    ckpt = safe_load(path)
    meta = ckpt.get("metacompose")
    check_meta_section(path, meta)
    state = {k.removeprefix("learner."): v for k, v in ckpt.get("state_dict", {}).items()}
    for name, tensor in state.items():
        finite = not isinstance(tensor, torch.Tensor) or torch.isfinite(tensor).all()
        if not finite:
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{path}: weight {name!r} holds {bad} non-finite value(s) (NaN/Inf) of "
                f"{tensor.numel()}: the run diverged; use an earlier checkpoint"
            )
    config = None
    try:
        config = move_check_keys(drop_retired_keys(meta["config"], path))
        cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.create(config))
        if routing is not None:
            reroute(cfg, routing, source=str(path))
        family = build_family(cfg.task)
        why = changed_data(meta.get("data"), family, source=data_source(cfg.task.args))
        if why:  # before the model: other data can make it unbuildable, and this says why
            raise DataChanged(why)
        learner = build_learner(cfg, family)
        graph_cls = type(learner.graph)  # ModuleGraph, or a router's ModulePool
        saved = graph_cls.from_json_dict(meta["graph"]).to_json_dict()
    except DataChanged as e:
        raise CheckpointError(f"{path}: {e}") from None
    except RerouteError:
        raise
    except (ValueError, GraphError, KeyError) as e:
        if (
            routing is not None
            and type(e) is not KeyError
            and builds_as_trained(config, meta["graph"])
        ):
            raise reroute_failed(routing, str(path), e) from e  # e.g. anchors with search
        raise CheckpointError(f"{path}: cannot rebuild the model: {e}") from e
    if saved != learner.graph.to_json_dict():
        raise CheckpointError(f"{path}: stored graph does not match the graph its config builds")
    try:
        learner.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: weights do not fit the model: {' '.join(str(e).split())[:300]}"
        ) from e
    learner.eval()
    return learner, cfg, family, record_in(ckpt)


# Router options removed from the schema, with the value every checkpoint that used them wrote
# (none of them changed what was built at that value).
RETIRED_ROUTER_KEYS = {
    "descriptor_classes": 0,
    "amortized": True,
    "descriptor_local": False,
    "modulation_lr": 0.1,
    "anchor_rounds": 4,
    "adapt": "modules",
}


def drop_retired_keys(config: dict, path: str | Path) -> dict:
    """An older checkpoint's config without the retired router keys at their old defaults.

    Raises:
        CheckpointError: a retired key set to another value (the model it describes can no
            longer be built).
    """
    router = dict(config.get("router") or {})
    for key, default in RETIRED_ROUTER_KEYS.items():
        if key in router and router.pop(key) != default:
            raise CheckpointError(
                f"{path}: router.{key}={config['router'][key]!r} is no longer supported "
                f"(removed option); this checkpoint cannot be rebuilt"
            )
    return {**config, "router": router} if "router" in config else config


# Compositional task arguments that moved into ``task.args.check`` (ConfusabilityCheck): old name
# -> new field. Only the check on construction reads them; the tasks drawn do not change.
MOVED_CHECK_KEYS = {"min_distinct": "min_distinct", "on_confusable": "on_confusable",
                    "check_points": "points"}  # fmt: skip


def move_check_keys(config: dict) -> dict:
    """An older checkpoint's config with its compositional check arguments in ``task.args.check``."""
    task = config.get("task") or {}
    args = dict(task.get("args") or {})
    moved = {new: args.pop(old) for old, new in MOVED_CHECK_KEYS.items() if old in args}
    if not moved:
        return config
    args["check"] = {**moved, **(args.get("check") or {})}
    return {**config, "task": {**task, "args": args}}


def evaluate(
    learner: Learner,
    family: TaskFamily,
    *,
    n_tasks: int = 600,
    steps: int = 10,
    shots: int = 10,
    query: int = 10,
    seed: int = 0,
    batch_size: int = 100,
    subset: str | None = None,
) -> EvalResult:
    """Adapt to ``n_tasks`` meta-test tasks (seeded, disjoint from training) for 0..``steps`` steps.

    ``subset`` draws only that subset of the family's tasks (one of ``family.subsets``). A
    routed learner on a family with ``factors`` is also scored for routing purity on the same
    tasks. A progress bar over the tasks is drawn on stderr (see :mod:`metacompose.progress`).
    """
    stream = {"n_tasks": n_tasks, "shots": shots, "query": query, "seed": seed}
    stream |= {"batch_size": batch_size, "subset": subset}
    curve = evaluate_tasks(learner, family, steps=steps, **stream).double()  # (S + 1, N)
    mean = curve.mean(dim=1)
    ci = ci95_over_tasks(curve, dim=1) if n_tasks > 1 else torch.zeros_like(mean)
    return EvalResult(
        task_family=family.name,
        metric=family.metric,
        shots=shots,
        n_tasks=n_tasks,
        steps=list(range(steps + 1)),
        mean=[float(v) for v in mean],
        ci95=[float(v) for v in ci],
        subset=subset,
        routing=routing_purity_of(learner, family, **stream),
        seed=seed,
        query=query,
        tasks_digest=tasks_digest(meta_test_batches(family, **stream)),
        per_task=curve,
    )


def check_subset(family: TaskFamily, subset: str | None) -> None:
    """One-line ``ValueError`` unless ``subset`` is ``None`` or one of ``family.subsets``."""
    if subset is None:
        return
    subsets = subsets_of(family)
    if not subsets:
        raise ValueError(f"--subset {subset}: family {family.name!r} declares no subsets")
    if subset not in subsets:
        raise ValueError(
            f"--subset {subset}: family {family.name!r} has subsets {', '.join(subsets)}"
        )


def meta_test_batches(
    family: TaskFamily,
    *,
    n_tasks: int,
    shots: int,
    query: int,
    seed: int = 0,
    batch_size: int = 100,
    subset: str | None = None,
) -> Iterator[TaskBatch]:
    """The seeded meta-test stream of :func:`evaluate`, ``batch_size`` tasks at a time (so
    ``batch_size`` is part of the stream); ``subset`` as in :func:`evaluate`."""
    check_subset(family, subset)
    g = torch.Generator().manual_seed(derive_seed(seed, "test", "eval"))
    kw = {} if subset is None else {"subset": subset}
    for start in range(0, n_tasks, batch_size):
        b = min(batch_size, n_tasks - start)
        yield family.sample(b, shots=shots, query=query, generator=g, split="test", **kw)


def routing_purity_of(learner: Learner, family: TaskFamily, **stream) -> dict | None:
    """Routing purity (:func:`metacompose.router.metrics.routing_purity`) of the learner's hard
    choices on the tasks of :func:`meta_test_batches` (``stream``: its arguments), or ``None`` when
    the learner does not route or the family exposes no ``factors``."""
    factors, slots = factors_of(family), candidate_slots(learner)
    if not factors or slots is None or not slots.routed_slots:
        return None
    choices: dict[str, list[int]] = {}
    truth: dict[str, list[int]] = {f: [] for f in factors}
    with torch.no_grad():
        for batch in meta_test_batches(family, **stream):
            for slot, c in learner.choices(batch).items():
                choices.setdefault(slot, []).extend(c.tolist())
            for f in factors:
                truth[f].extend(batch.info[f].tolist())
    if not choices:  # uniform routing: no hard choice
        return None
    return family_purity(learner, family, choices, truth)


def family_purity(
    learner: Learner, family: TaskFamily, choices: dict[str, list[int]], truth: dict
) -> dict:
    """:func:`~metacompose.router.metrics.routing_purity` of hard ``choices`` against the family's
    true factors ``truth``; for a structure whose slots are interchangeable (the sum) also scored
    as a set (``"as_set"``: :func:`~metacompose.router.metrics.set_purity`)."""
    factors = family.factors
    graph = candidate_slots(learner)
    sizes = {s: graph.num_candidates[s] for s in choices}
    purity = routing_purity(choices, truth, factors, sizes)
    if interchangeable_slots(family):  # either bank may hold either slot's primitive
        purity["as_set"] = set_purity(choices, truth, factors, sizes, shared=graph.shared)
    return purity


def evaluate_tasks(
    learner: Learner,
    family: TaskFamily,
    *,
    n_tasks: int,
    steps: int,
    shots: int,
    query: int,
    seed: int = 0,
    batch_size: int = 100,
    chunk: int | None = None,
    subset: str | None = None,
) -> torch.Tensor:
    """Per-task query metric after 0..``steps`` inner steps: ``(steps + 1, n_tasks)``.

    Tasks are drawn as :func:`meta_test_batches` does, and each drawn batch is adapted ``chunk``
    tasks at a time (default: all of it), with a progress bar over the tasks.
    """
    curves = []
    stream = meta_test_batches(
        family, n_tasks=n_tasks, shots=shots, query=query, seed=seed, batch_size=batch_size,
        subset=subset,
    )  # fmt: skip
    with progress(desc=f"eval {family.name}", total=n_tasks, unit="task") as bar:
        for batch in stream:
            b = batch.num_tasks
            step = b if chunk is None else chunk
            for i in range(0, b, step):
                part = batch if step >= b else batch.slice(i, min(i + step, b))
                curves.append(learner.evaluate(part, steps=steps))
                bar.update(part.num_tasks)
    return torch.cat(curves, dim=1)


@dataclass
class ShotsResult:
    """Query metric of a learner without adaptation steps (in-context) against the support size K."""

    task_family: str
    metric: str
    n_tasks: int
    shots: list[int]
    mean: list[float]
    ci95: list[float]

    def to_json_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        lines = [f"{'shots':>5}  {'query ' + self.metric:>14}  {'± 95% CI':>10}"]
        for k, m, c in zip(self.shots, self.mean, self.ci95):
            lines.append(f"{k:>5}  {m:>14.4f}  {c:>10.4f}")
        return "\n".join(lines)


def evaluate_shots(
    learner: Learner,
    family: TaskFamily,
    *,
    shots: list[int],
    n_tasks: int = 600,
    query: int = 10,
    seed: int = 0,
) -> ShotsResult:
    """The metric on ``n_tasks`` meta-test tasks for each K in ``shots`` (a learner whose adaptation
    is reading the support set: the number of shots replaces the steps axis)."""
    means, cis = [], []
    for k in shots:
        values = evaluate_tasks(
            learner, family, n_tasks=n_tasks, steps=0, shots=k, query=query, seed=seed
        )[-1].double()
        means.append(float(values.mean()))
        cis.append(float(ci95_over_tasks(values[None], dim=1)[0]) if n_tasks > 1 else 0.0)
    return ShotsResult(family.name, family.metric, n_tasks, list(shots), means, cis)
