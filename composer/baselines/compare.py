"""Train and score one method on one task family, every method through the same evaluation.

Every method is scored on the same seeded meta-test tasks (:func:`metacompose.report.metric_curves`).
Its free evaluation choices (the number of adaptation steps, and for the fine-tuning baselines
the step size) are chosen on meta-*validation* tasks, never on meta-test tasks.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf

from metacompose.baselines.bayes_last_layer import BayesLastLayer
from metacompose.baselines.deep_kernel import DeepKernelGP, mean_network, mlp_features
from metacompose.baselines.finetune import FineTuneLearner
from metacompose.baselines.meta_train import meta_train
from metacompose.baselines.mixed_effects import MixedEffectsLearner, family_grams, fit_mixed_model
from metacompose.baselines.pretrain import pretrain_pooled
from metacompose.baselines.protonet import ProtoNet
from metacompose.build import build_graph, build_learner, loss_for
from metacompose.report.curves import metric_curves
from metacompose.report.grouped_tasks import curve_task_groups, has_groups
from metacompose.report.stats import Estimate, over_tasks
from metacompose.tasks.base import HasClasses, TaskFamily

META_METHODS = ("maml", "fomaml", "metasgd", "anil")
# the statistician's baselines for grouped regression: a linear mixed model (empirical Bayes) and
# a GP per task with a meta-learned deep kernel
STAT_METHODS = ("mixed_effects", "gp_dkt")
# Learners outside the MAML family (``algo.name``); in-context ones adapt in one forward pass.
CONTEXT_METHODS = ("incontext", "cnp")
LEARNER_METHODS = (*CONTEXT_METHODS, "learned_opt")
# A GP per task whose prior mean function is meta-learned as well as its kernel, and ALPaCA (a
# Bayesian last layer on [1, x, g(x)]: contains the mixed model): meta-learners, not baselines.
GP_METHODS = ("gp_deep_mean", "alpaca")
METHODS = ("scratch", "pretrain_finetune", "protonet", *META_METHODS, "routed", *LEARNER_METHODS,
           *GP_METHODS, *STAT_METHODS)  # fmt: skip


@dataclass
class MethodResult:
    """One method's meta-test score and what it cost."""

    method: str
    metric: str
    test: Estimate
    steps: int  # adaptation steps chosen on meta-val
    lr: float | None  # fine-tuning step size chosen on meta-val (baselines only)
    train_iterations: int
    train_seconds: float
    eval_seconds: float
    values: torch.Tensor | None = None  # (N,) per-task test metric, same tasks for every method
    bad_tasks: int = 0  # meta-training tasks dropped for a non-finite query loss
    skipped_steps: int = 0  # meta-training steps skipped (non-finite meta-gradient)
    groups: torch.Tensor | None = None  # (N,) group of each test task (grouped families)
    val_mean: float | None = None  # mean meta-val metric at the chosen step (picks the best)
    learner: torch.nn.Module | None = None  # the trained learner (meta-learned methods)
    members: tuple[str, ...] = ()  # an ensemble's methods, its weight on the first
    weight: float | None = None
    weights: tuple[float, ...] = ()  # a stack's weight on each member


@dataclass
class EvalPlan:
    """Which tasks score a method: K, Q, task counts, the task seed and the device."""

    shots: int
    query: int
    val_tasks: int = 200
    test_tasks: int = 400
    seed: int = 0
    device: str = "cpu"


def best_step(curve: torch.Tensor, metric: str) -> int:
    """Index of the best mean over tasks of a ``(S + 1, N)`` curve (lowest MSE, highest accuracy).

    Steps whose mean is not finite are skipped.
    """
    mean = curve.mean(1)
    bad = ~mean.isfinite()  # a diverged step (NaN/inf on some task) is never chosen
    if metric == "mse":
        return int(mean.masked_fill(bad, float("inf")).argmin())
    return int(mean.masked_fill(bad, float("-inf")).argmax())


def score(
    learner, family: TaskFamily, plan: EvalPlan, *, max_steps: int
) -> tuple[torch.Tensor, int, float]:
    """``(per-task test metric (N,) at the step chosen on val, that step, mean val metric)``."""
    kw = {"shots": plan.shots, "query": plan.query, "steps": max_steps, "seed": plan.seed,
          "device": plan.device}  # fmt: skip
    val = metric_curves(learner, family, split="val", n_tasks=plan.val_tasks, **kw)
    s = best_step(val, family.metric)
    test = metric_curves(
        learner, family, split="test", n_tasks=plan.test_tasks, **{**kw, "steps": s}
    )
    return test[s], s, float(val[s].mean())


def score_finetune(
    graph, family: TaskFamily, plan: EvalPlan, *, lrs: Sequence[float], max_steps: int,
    adapt: list[str] | None,
) -> tuple[torch.Tensor, int, float, float]:  # fmt: skip
    """Per-task test metric ``(N,)`` with the step size and step count chosen on meta-val:
    ``(values, steps, step size, mean val metric)``."""
    best = None
    for lr in lrs:
        ft = FineTuneLearner(
            graph=graph, loss=loss_for(family), lr=lr, steps=max_steps, adapt=adapt
        )
        val = metric_curves(ft, family, split="val", n_tasks=plan.val_tasks, shots=plan.shots,
                            query=plan.query, steps=max_steps, seed=plan.seed, device=plan.device)  # fmt: skip
        s = best_step(val, family.metric)
        v = float(val[s].mean())
        if best is None or (v < best[0] if family.metric == "mse" else v > best[0]):
            best = (v, lr, s)
    v, lr, s = best
    ft = FineTuneLearner(graph=graph, loss=loss_for(family), lr=lr, steps=s, adapt=adapt)
    test = metric_curves(ft, family, split="test", n_tasks=plan.test_tasks, shots=plan.shots,
                         query=plan.query, steps=s, seed=plan.seed, device=plan.device)  # fmt: skip
    return test[s], s, lr, v


def run_method(
    method: str,
    cfg: DictConfig,
    family: TaskFamily,
    plan: EvalPlan,
    *,
    iterations: int,
    max_seconds: float | None,
    finetune_lrs: Sequence[float] = (1e-3, 1e-2, 1e-1),
    finetune_steps: int = 100,
    pretrained: torch.nn.Module | None = None,
    eval_steps: int | None = None,
) -> MethodResult:
    """Train ``method`` (config ``cfg`` gives the model and the MAML-family hyper-parameters).

    Args:
        method: one of ``METHODS``.
        pretrained: for ``pretrain_finetune``, a graph already pre-trained (reused across K).
        iterations, max_seconds: meta-training budget (whichever ends first).
        finetune_lrs, finetune_steps: the step sizes and the most steps that ``scratch`` and
            ``pretrain_finetune`` may pick from on meta-val tasks.
        eval_steps: the most adaptation steps a meta-learner may pick on meta-val tasks
            (default: the config's ``algo.eval_inner_steps``); meta-training is unaffected.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {METHODS}")
    metric = family.metric
    groups = None
    if has_groups(family):
        groups = curve_task_groups(family, split="test", n_tasks=plan.test_tasks,
                                   shots=plan.shots, query=plan.query, seed=plan.seed)  # fmt: skip
    if method in ("scratch", "pretrain_finetune"):
        if method == "scratch":
            graph = build_graph(cfg.model, cfg.seed).to(plan.device)
        else:
            graph = pretrained
        # Classification fine-tunes a linear head on the pre-trained body (Chen et al. 2019).
        adapt = ["head"] if method == "pretrain_finetune" and metric == "accuracy" else None
        t0 = time.perf_counter()
        v, steps, lr, val = score_finetune(graph, family, plan, lrs=finetune_lrs,
                                           max_steps=finetune_steps, adapt=adapt)  # fmt: skip
        return MethodResult(method, metric, over_tasks(v), steps, lr, 0, 0.0,
                            time.perf_counter() - t0, v, groups=groups, val_mean=val)  # fmt: skip
    if method == "mixed_effects":
        if not has_groups(family):
            raise ValueError("mixed_effects applies to grouped regression families only")
        t0 = time.perf_counter()
        fit = fit_mixed_model(*family_grams(family, "train"), reml=True)
        train_s, t1 = time.perf_counter() - t0, time.perf_counter()
        learner = MixedEffectsLearner(fit=fit)
        v, steps, val = score(learner, family, plan, max_steps=0)
        return MethodResult(method, metric, over_tasks(v), steps, None, 0, train_s,
                            time.perf_counter() - t1, v, groups=groups, val_mean=val,
                            learner=learner)  # fmt: skip
    learner, max_steps = _trained_learner(method, cfg, family, eval_steps=eval_steps)
    learner.to(plan.device)
    r = meta_train(learner, family, iterations=iterations, meta_batch_size=cfg.data.meta_batch_size,
                   shots=plan.shots, query=plan.query, lr=cfg.optim.lr, seed=cfg.seed,
                   grad_clip=cfg.optim.grad_clip, max_seconds=max_seconds, device=plan.device,
                   desc=f"meta-train {method}")  # fmt: skip
    t1 = time.perf_counter()
    v, steps, val = score(learner, family, plan, max_steps=max_steps)
    return MethodResult(method, metric, over_tasks(v), steps, None, r.iterations, r.seconds,
                        time.perf_counter() - t1, v, r.bad_tasks, r.skipped_steps,
                        groups=groups, val_mean=val, learner=learner)  # fmt: skip


def _trained_learner(
    method: str, cfg: DictConfig, family: TaskFamily, *, eval_steps: int | None
) -> tuple[torch.nn.Module, int]:
    """The learner ``method`` meta-trains, and the most adaptation steps it may pick on meta-val
    (see :func:`run_method`)."""
    if method == "protonet":
        if family.metric != "accuracy":
            raise ValueError("protonet applies to classification families only")
        learner = ProtoNet(
            encoder=build_graph(cfg.model, cfg.seed).node("body"), ways=family.out_dim
        )
        max_steps = 0
    elif method in ("gp_dkt", *GP_METHODS):
        if family.metric != "mse":
            raise ValueError(f"{method} applies to regression families only")
        hidden = tuple(cfg.model.args.get("hidden", (40, 40)))
        d = family.in_space.numel
        if method == "alpaca":
            learner = BayesLastLayer(in_features=d, hidden=hidden, seed=cfg.seed)
        else:
            learner = DeepKernelGP(feature_map=mlp_features(d, hidden, seed=cfg.seed),
                                   mean_map=None if method == "gp_dkt" else
                                   mean_network(d, hidden, seed=cfg.seed + 1))  # fmt: skip
        max_steps = 0
    else:
        c = copy.deepcopy(cfg)
        if method == "routed":
            if not c.router.enabled:
                raise ValueError("routed needs a config with router.enabled=true")
        else:
            OmegaConf.update(c, "algo.name", method)
            OmegaConf.update(c, "router.enabled", False)
        learner = build_learner(c, family)
        max_steps = c.algo.eval_inner_steps if eval_steps is None else int(eval_steps)
        if method in CONTEXT_METHODS:
            max_steps = 0  # no inner loop: the support set is read in the forward pass
    return learner, max_steps


def paired_difference(a: MethodResult, b: MethodResult) -> Estimate:
    """``a - b`` on the same test tasks: the interval of the mean per-task difference."""
    return over_tasks(a.values - b.values)


def pretrain_for(cfg: DictConfig, family: TaskFamily, *, iterations: int, max_seconds: float | None,
                 device: str = "cpu") -> tuple[torch.nn.Module, float, int]:  # fmt: skip
    """A graph pre-trained on pooled meta-train data: ``(graph, seconds, iterations)``."""
    graph = build_graph(cfg.model, cfg.seed).to(device)
    n_classes = family.num_classes if isinstance(family, HasClasses) else None
    r = pretrain_pooled(graph, family, iterations=iterations, shots=cfg.task.shots,
                        query=cfg.task.query, lr=cfg.optim.lr, seed=cfg.seed,
                        n_classes=n_classes if family.metric == "accuracy" else None,
                        max_seconds=max_seconds, device=device)  # fmt: skip
    return graph, r.seconds, r.iterations
