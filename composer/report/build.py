"""Evaluate checkpoints on the same seeded meta-test tasks and assemble ``report.json``.

For each checkpoint: adaptation speed (metric against inner steps), sample efficiency (metric
against K), the generalisation gap (meta-train vs meta-test tasks), out-of-distribution tasks (the
config's ``report.ood_family``), forgetting (sequential adaptation T1..Tn; also with the body
frozen) and meta-validation convergence (the run's ``metrics.csv``). Numbers carry 95% intervals
over tasks; checkpoints that differ only in ``seed`` are also summarised over seeds.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from composer.config import ConfigError
from composer.evaluate import load_checkpoint
from composer.report.convergence import read_curve, run_dir_of
from composer.report.curves import metric_curves
from composer.report.forgetting import sequential_metrics, supports_forgetting
from composer.report.stats import Estimate, difference, over_seeds, over_tasks
from composer.tasks import FAMILIES


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


def _est(e: Estimate) -> dict:
    return e.to_json_dict()


def _curve(values: torch.Tensor) -> dict:
    """``(S + 1, N)`` -> per-step mean and 95% half-width over tasks."""
    rows = [over_tasks(v) for v in values]
    return {
        "steps": list(range(len(rows))),
        "mean": [r.mean for r in rows],
        "ci95": [r.ci95 for r in rows],
    }


def group_key(cfg) -> str:
    """Checkpoints whose configs differ only in ``seed``/``name``/``out_dir`` share a key."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for k in ("seed", "name", "out_dir"):
        c.pop(k, None)
    return hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:10]


def build_ood_family(cfg, learner):
    r = cfg.report
    if r.ood_family is None:
        return None
    if r.ood_family not in FAMILIES:
        raise ConfigError(
            f"report.ood_family: unknown family {r.ood_family!r}; known: {sorted(FAMILIES)}"
        )
    args = OmegaConf.to_container(r.ood_args, resolve=True)
    try:
        fam = FAMILIES[r.ood_family](**args)
    except (TypeError, ValueError, FileNotFoundError) as e:
        raise ConfigError(f"report.ood_args: {e}") from e
    if fam.in_space.shape != learner.graph.in_space.shape:
        raise ConfigError(
            f"report.ood_family: {fam.name} input {fam.in_space} does not match the model's "
            f"{learner.graph.in_space}"
        )
    return fam


def evaluate_checkpoint(path: str | Path, settings: ReportSettings) -> dict:
    """Every measurement of one checkpoint, as plain JSON-ready data."""
    learner, cfg, family = load_checkpoint(path)
    learner.to(settings.device)
    steps = cfg.algo.eval_inner_steps if settings.steps is None else settings.steps
    shots, query = int(cfg.task.shots), int(cfg.task.query)
    common = {"n_tasks": settings.n_tasks, "query": query, "steps": steps, "seed": settings.seed,
              "device": settings.device}  # fmt: skip
    test = metric_curves(learner, family, split="test", shots=shots, **common)
    entry: dict = {
        "path": str(path),
        "label": run_dir_of(path).name,
        "group": group_key(cfg),
        "seed": int(cfg.seed),
        "family": family.name,
        "metric": family.metric,
        "algorithm": cfg.algo.name + ("+router" if cfg.router.enabled else ""),
        "shots": shots,
        "query": query,
        "inner_steps": steps,
        "final": _est(over_tasks(test[-1])),
        "adaptation": _curve(test),
    }
    # Sample efficiency: the final metric against K.
    eff = {"shots": [], "mean": [], "ci95": [], "skipped": {}}
    for k in settings.shots or list(cfg.report.shots):
        try:
            v = (
                test
                if k == shots
                else metric_curves(learner, family, split="test", shots=k, **common)
            )
        except ValueError as e:
            eff["skipped"][str(k)] = str(e)
            continue
        e = over_tasks(v[-1])
        eff["shots"].append(int(k))
        eff["mean"].append(e.mean)
        eff["ci95"].append(e.ci95)
    entry["sample_efficiency"] = eff
    # Generalisation gap: the same measurement on meta-train tasks.
    tr = over_tasks(metric_curves(learner, family, split="train", shots=shots, **common)[-1])
    te = over_tasks(test[-1])
    entry["generalisation"] = {"train": _est(tr), "test": _est(te), "gap": _est(difference(tr, te))}
    # Out of distribution.
    ood = build_ood_family(cfg, learner)
    if ood is None:
        entry["ood"] = {"family": None, "reason": "no report.ood_family in the run's config"}
    else:
        o = over_tasks(metric_curves(learner, ood, split="test", shots=shots, **common)[-1])
        entry["ood"] = {"family": ood.name, "in_distribution": _est(te), "ood": _est(o),
                        "shift": _est(difference(o, te))}  # fmt: skip
    entry["forgetting"] = forgetting_entry(learner, family, cfg, settings, shots, query, steps)
    entry["convergence"] = convergence_entry(path, family.metric)
    return entry


def forgetting_entry(learner, family, cfg, settings, shots, query, steps) -> dict:
    if not supports_forgetting(learner):
        return {"reason": f"{type(learner).__name__}: sequential adaptation not supported"}
    scopes = {"adapted": None}
    if "head" in learner.graph.node_names and len(learner.graph.node_names) > 1:
        scopes["frozen_body"] = ["head"]
    out = {"length": settings.forgetting_length, "sequences": settings.forgetting_sequences}
    for name, scope in scopes.items():
        if scope is not None and set(learner.graph.param_keys(scope)) >= set(learner.adapt_keys):
            scope_keys = None  # already head-only (ANIL): the same as "adapted"
        else:
            scope_keys = scope
        m = sequential_metrics(
            learner, family, n_sequences=settings.forgetting_sequences,
            length=settings.forgetting_length, shots=shots, query=query, steps=steps,
            seed=settings.seed, scope=scope_keys, device=settings.device,
        )  # fmt: skip
        n = settings.forgetting_length
        own = [over_tasks(m[:, i, i]) for i in range(n)]
        last = [over_tasks(m[:, i, n - 1]) for i in range(n)]
        drop = m[:, torch.arange(n - 1), torch.arange(n - 1)] - m[:, : n - 1, n - 1]
        out[name] = {
            "after_own": [_est(e) for e in own],
            "after_last": [_est(e) for e in last],
            # own-task metric minus the metric after Tn, averaged over T1..Tn-1 (accuracy: a
            # positive value is forgetting; mse: a negative value is forgetting)
            "change": _est(over_tasks(drop.mean(1))),
        }
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
    return {"column": column, "steps": steps, "values": values}


def seed_summaries(entries: list[dict]) -> list[dict]:
    """Per group of checkpoints that differ only in their seed: the final metric over seeds."""
    groups: dict[str, list[dict]] = {}
    for e in entries:
        groups.setdefault(e["group"], []).append(e)
    out = []
    for key, members in groups.items():
        est = over_seeds([m["final"]["mean"] for m in members])
        out.append({
            "group": key,
            "family": members[0]["family"],
            "algorithm": members[0]["algorithm"],
            "metric": members[0]["metric"],
            "seeds": [m["seed"] for m in members],
            "final": _est(est),
        })  # fmt: skip
    return out


def build_report(checkpoints: list[str | Path], settings: ReportSettings) -> dict:
    if not checkpoints:
        raise ValueError("report needs at least one checkpoint")
    entries = [evaluate_checkpoint(p, settings) for p in checkpoints]
    return {
        "settings": asdict(settings),
        "checkpoints": entries,
        "over_seeds": seed_summaries(entries),
    }


def fmt(e: dict | None, digits: int = 4) -> str:
    if e is None:
        return "n/a"
    ci = e.get("ci95")
    if ci is None or (isinstance(ci, float) and math.isnan(ci)):
        return f"{e['mean']:.{digits}f}"
    return f"{e['mean']:.{digits}f} ± {ci:.{digits}f}"
