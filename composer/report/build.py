"""Evaluate checkpoints on the same seeded meta-test tasks and assemble ``report.json``.

For each checkpoint: adaptation speed (metric against inner steps), sample efficiency (metric
against K), the generalisation gap (meta-train vs meta-test tasks), out-of-distribution tasks (the
config's ``report.ood_family``), forgetting (sequential adaptation T1..Tn; also with the body
frozen) and meta-validation convergence (the run's ``metrics.csv``). Numbers carry 95% intervals
over tasks; checkpoints that differ only in ``seed`` are also summarised over seeds.

A section that does not apply to a checkpoint (no OOD family, a learner that cannot adapt in
sequence, no ``metrics.csv``, a K its tasks cannot supply) holds ``{"reason": ...}`` instead of
numbers; an estimate whose adaptation blew up is ``"diverged": true`` (see ``stats.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from metacompose.algorithms import Learner
from metacompose.config import ConfigError, check_kwargs, in_file
from metacompose.evaluate import load_with_restarts
from metacompose.progress import progress, track
from metacompose.report.convergence import read_curve, run_dir_of
from metacompose.report.curves import metric_curves
from metacompose.report.forgetting import sequential_metrics, supports_forgetting
from metacompose.report.grouped_stats import over_groups
from metacompose.report.grouped_tasks import curve_task_groups, has_groups
from metacompose.report.stats import difference, over_seeds, over_tasks
from metacompose.tasks import FAMILIES, TaskFamily
from metacompose.training.checkpoint_io import checkpoint_file


@dataclass
class ReportSettings:
    """What to measure. ``None`` fields default to each checkpoint's own config."""

    n_tasks: int = 200  # meta-test tasks per measurement
    steps: int | None = None  # inner steps (default: algo.eval_inner_steps)
    shots: list[int] | None = None  # K values of sample efficiency (default: report.shots)
    forgetting_length: int = 5  # n of the sequence T1..Tn
    forgetting_sequences: int = 50  # sequences (the interval is over them)
    seed: int = 0  # seed of every meta-test task stream
    device: str = "cpu"
    # torch CPU threads while measuring (None: torch's default). The measurements are many small
    # ops; on a busy 2-core machine one thread made a sinusoid report's evaluation 2-25x faster
    # (0.3-0.45 s vs 0.7-12 s) and a small conv net's 3-6x.
    threads: int | None = 1


def _start(values: torch.Tensor) -> float:
    """Mean metric before adaptation (row 0 of a curve): the reference for divergence."""
    return float(values[0].mean())


def final_summary(values: torch.Tensor) -> dict:
    """``(S + 1, N)`` -> the estimate after the last step (diverged relative to step 0), as JSON."""
    return over_tasks(values[-1], reference=_start(values)).to_json_dict()


def curve_summary(values: torch.Tensor) -> dict:
    """``(S + 1, N)`` -> per-step mean, 95% half-width over tasks, and whether it diverged."""
    rows = [over_tasks(v, reference=_start(values)) for v in values]
    return {
        "steps": list(range(len(rows))),
        "mean": [None if r.diverged else r.mean for r in rows],
        "ci95": [None if r.diverged else r.ci95 for r in rows],
        "diverged": [r.diverged for r in rows],
    }


def group_key(cfg) -> str:
    """Checkpoints whose configs differ only in ``seed``/``name``/``out_dir`` share a key."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for k in ("seed", "name", "out_dir"):
        c.pop(k, None)
    return hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:10]


class OodUnavailable(Exception):
    """The OOD family cannot be measured here (data or optional package missing, or its tasks do
    not fit the model): the section holds a reason."""


def build_ood_family(cfg, learner, family):
    """The config's ``report.ood_family`` (``None`` when unset).

    Raises:
        ConfigError: unknown family or bad arguments.
        OodUnavailable: its data or optional package is missing on this machine, or its inputs or
            outputs do not fit the model (a reason in the report, not bad input).
    """
    r = cfg.report
    if r.ood_family is None:
        return None
    if r.ood_family not in FAMILIES:
        raise ConfigError(
            f"report.ood_family={r.ood_family}: unknown family; known: {', '.join(sorted(FAMILIES))}"
        )
    args = OmegaConf.to_container(r.ood_args, resolve=True)
    check_kwargs(FAMILIES[r.ood_family], args, "report.ood_args")
    try:
        fam = FAMILIES[r.ood_family](**args)
    except (OSError, ImportError) as e:
        raise OodUnavailable(f"report.ood_args of {r.ood_family}: {e}") from e
    except (TypeError, ValueError) as e:
        raise ConfigError(f"report.ood_args of {r.ood_family}: {e}") from e
    if (
        fam.in_space.shape != learner.graph.in_space.shape
    ):  # a reason, not bad input: train allows it
        raise OodUnavailable(
            f"report.ood_family={r.ood_family}: {fam.name} input {fam.in_space} does not match "
            f"the model's {learner.graph.in_space}"
        )
    if (fam.out_dim, fam.metric) != (family.out_dim, family.metric):
        raise OodUnavailable(
            f"report.ood_family={r.ood_family}: {fam.name} has {fam.out_dim} outputs "
            f"({fam.metric}), the model {family.out_dim} ({family.metric})"
        )
    return fam


@dataclass
class LoadedCheckpoint:
    """A checkpoint rebuilt for the report, with its OOD family (or why it has none)."""

    path: str | Path
    learner: Learner
    cfg: DictConfig
    family: TaskFamily
    ood: TaskFamily | None
    ood_reason: str | None
    restarts: dict | None  # its block-restart record, read with the weights


def load_for_report(path: str | Path) -> LoadedCheckpoint:
    """Rebuild a checkpoint and its OOD family before anything is measured.

    Raises:
        CheckpointError: an unreadable or unbuildable checkpoint.
        ConfigError: ``PATH: report.ood_family...`` when its stored ``report`` section is bad.
    """
    learner, cfg, family, restarts = load_with_restarts(path)
    try:
        ood, reason = build_ood_family(cfg, learner, family), None
    except OodUnavailable as e:
        ood, reason = None, str(e)
    except ConfigError as e:
        raise in_file(path, e) from e
    return LoadedCheckpoint(path, learner, cfg, family, ood, reason, restarts)


def evaluate_checkpoint(
    checkpoint: LoadedCheckpoint | str | Path, settings: ReportSettings
) -> dict:
    """Every measurement of one checkpoint, as plain JSON-ready data (progress on stderr)."""
    c = checkpoint if isinstance(checkpoint, LoadedCheckpoint) else load_for_report(checkpoint)
    path, learner, cfg, family, ood = c.path, c.learner, c.cfg, c.family, c.ood
    learner.to(settings.device)
    steps = cfg.algo.eval_inner_steps if settings.steps is None else settings.steps
    shots, query = int(cfg.task.shots), int(cfg.task.query)
    label = run_dir_of(path).name
    common = {"n_tasks": settings.n_tasks, "query": query, "steps": steps, "seed": settings.seed,
              "device": settings.device}  # fmt: skip
    ks = [int(k) for k in (settings.shots or cfg.report.shots)]
    scopes = forgetting_scopes(learner)
    total = 2 + sum(k != shots for k in ks) + (ood is not None) + len(scopes)
    with progress(total=total, desc=f"report {label}", unit="measurement") as bar:

        def curves(what: str, fam, **kw) -> torch.Tensor:
            bar.set_postfix_str(what)
            try:
                return metric_curves(learner, fam, **common, **kw)
            finally:
                bar.update()

        test = curves("meta-test", family, split="test", shots=shots)
        entry: dict = {
            "path": str(path),
            "label": label,
            "group": group_key(cfg),
            "seed": int(cfg.seed),
            "family": family.name,
            "metric": family.metric,
            "algorithm": cfg.algo.name + ("+router" if cfg.router.enabled else ""),
            "shots": shots,
            "query": query,
            "inner_steps": steps,
            "final": final_summary(test),
            "adaptation": adaptation_entry(learner, test),
        }
        if has_groups(family):  # the independent unit is the group, not the task
            groups = curve_task_groups(family, split="test", n_tasks=settings.n_tasks,
                                       shots=shots, query=query, seed=settings.seed)  # fmt: skip
            entry["final_over_groups"] = over_groups(test[-1], groups).to_json_dict()
        # Sample efficiency: the final metric against K.
        eff = {"shots": [], "mean": [], "ci95": [], "diverged": [], "skipped": {}}
        for k in ks:
            try:
                v = test if k == shots else curves(f"K={k}", family, split="test", shots=k)
            except ValueError as e:
                eff["skipped"][str(k)] = str(e)
                continue
            e = final_summary(v)
            for key in ("mean", "ci95", "diverged"):
                eff[key].append(e[key])
            eff["shots"].append(k)
        entry["sample_efficiency"] = eff
        # Generalisation gap: the same measurement on meta-train tasks.
        train = curves("meta-train", family, split="train", shots=shots)
        tr = over_tasks(train[-1], reference=_start(train))
        te = over_tasks(test[-1], reference=_start(test))
        entry["generalisation"] = {"train": tr.to_json_dict(), "test": te.to_json_dict(),
                                   "gap": difference(tr, te).to_json_dict()}  # fmt: skip
        entry["ood"] = ood_entry(ood, c.ood_reason, te, lambda: curves("OOD", ood, split="test",
                                                                     shots=shots))  # fmt: skip
        entry["forgetting"] = forgetting_entry(
            learner, family, settings, scopes, shots=shots, query=query, steps=steps,
            reference=_start(test), bar=bar,
        )  # fmt: skip
    entry["convergence"] = convergence_entry(path, family.metric)
    return entry if c.restarts is None else {**entry, "restart_banks": c.restarts}


def adaptation_entry(learner, test: torch.Tensor) -> dict:
    """The metric against adaptation steps; a learner without steps (it reads the support set)
    gets its one row and a reason (its axis is K: see the sample-efficiency section)."""
    from metacompose.algorithms.context_learner import ContextLearner

    entry = curve_summary(test)
    if isinstance(learner, ContextLearner):
        entry["reason"] = (
            f"{type(learner.predictor).__name__} has no adaptation steps (it reads the support "
            "set): see sample efficiency (metric vs K)"
        )
    return entry


def ood_entry(ood, reason: str | None, in_distribution, measure) -> dict:
    if ood is None:
        return {"family": None, "reason": reason or "no report.ood_family in the run's config"}
    try:
        values = measure()
    except ValueError as e:
        return {"family": None, "reason": f"{ood.name}: {e}"}
    o = over_tasks(values[-1], reference=_start(values))
    return {"family": ood.name, "in_distribution": in_distribution.to_json_dict(),
            "ood": o.to_json_dict(), "shift": difference(o, in_distribution).to_json_dict()}  # fmt: skip


def forgetting_scopes(learner) -> dict[str, list[str] | None]:
    """Adaptation scopes of the forgetting measurement (none for learners it does not support)."""
    if not supports_forgetting(learner):
        return {}
    scopes: dict[str, list[str] | None] = {"adapted": None}
    if "head" in learner.graph.node_names and len(learner.graph.node_names) > 1:
        head_keys = set(learner.graph.param_keys(["head"]))
        if not head_keys >= set(learner.adapt_keys):  # already head-only (ANIL): same as adapted
            scopes["frozen_body"] = ["head"]
    return scopes


def forgetting_entry(learner, family, settings, scopes, *, shots, query, steps, reference,
                     bar) -> dict:  # fmt: skip
    if not scopes:
        return {"reason": f"{type(learner).__name__}: sequential adaptation not supported"}
    n = settings.forgetting_length
    out: dict = {"length": n, "sequences": settings.forgetting_sequences}
    for name, scope in scopes.items():
        bar.set_postfix_str(f"forgetting [{name}]")
        try:
            m = sequential_metrics(
                learner, family, n_sequences=settings.forgetting_sequences, length=n,
                shots=shots, query=query, steps=steps, seed=settings.seed, scope=scope,
                device=settings.device,
            )  # fmt: skip
        except ValueError as e:
            out[name] = {"reason": str(e)}
            continue
        finally:
            bar.update()
        drop = m[:, torch.arange(n - 1), torch.arange(n - 1)] - m[:, : n - 1, n - 1]
        out[name] = {
            "after_own": [over_tasks(m[:, i, i], reference=reference).to_json_dict()
                          for i in range(n)],
            "after_last": [over_tasks(m[:, i, n - 1], reference=reference).to_json_dict()
                           for i in range(n)],
            # own-task metric minus the metric after Tn, averaged over T1..Tn-1 (accuracy: a
            # positive value is forgetting; mse: a negative value is forgetting)
            "change": over_tasks(drop.mean(1), reference=reference).to_json_dict(),
        }  # fmt: skip
    return out


def convergence_entry(path: str | Path, metric: str) -> dict:
    csv_path = run_dir_of(path) / "metrics.csv"
    column = f"val/query_{metric}"
    if not csv_path.exists():
        return {"reason": f"no {csv_path}"}
    try:
        steps, values = read_curve(csv_path, column)
    except ValueError as e:
        return {"reason": str(e)}
    if not steps:
        return {"reason": f"no validation rows in {csv_path}"}
    return {"column": column, "steps": steps, "values": values}


def seed_summaries(entries: list[dict]) -> list[dict]:
    """Per group of checkpoints that differ only in their seed: the final metric over seeds."""
    groups: dict[str, list[dict]] = {}
    for e in entries:
        groups.setdefault(e["group"], []).append(e)
    out = []
    for key, members in groups.items():
        # runs that share a seed as well are the same run: one seed, not several
        per_seed: dict[int, float | None] = {}
        for m in members:
            per_seed.setdefault(m["seed"], m["final"]["mean"])
        est = over_seeds(list(per_seed.values()))
        out.append({
            "group": key,
            "family": members[0]["family"],
            "algorithm": members[0]["algorithm"],
            "metric": members[0]["metric"],
            "seeds": list(per_seed),
            "final": est.to_json_dict(),
        })  # fmt: skip
    return out


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (``None``: unchanged), then restore the count."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_report(checkpoints: list[str | Path], settings: ReportSettings) -> dict:
    if not checkpoints:
        raise ValueError("report needs at least one checkpoint")
    checkpoints = [checkpoint_file(p) for p in checkpoints]  # a run folder: its last.ckpt
    seen: dict[Path, Path] = {}
    for p in checkpoints:
        if p.resolve() in seen:
            raise ValueError(f"checkpoint {p} is given twice (also as {seen[p.resolve()]})")
        seen[p.resolve()] = p
    with torch_threads(settings.threads):
        keep = len(checkpoints) == 1  # one: checked and measured from the same build
        checked: list[LoadedCheckpoint | str | Path] = []
        for p in track(checkpoints, desc="report: checking", unit="checkpoint"):
            c = load_for_report(p)  # every one checked before measuring
            checked.append(c if keep else p)  # more than one: dropped (memory), rebuilt below
        entries = [
            evaluate_checkpoint(c, settings)
            for c in track(checked, desc="report: checkpoints", unit="checkpoint")
        ]
    return {
        "settings": asdict(settings),
        "checkpoints": entries,
        "over_seeds": seed_summaries(entries),
    }
