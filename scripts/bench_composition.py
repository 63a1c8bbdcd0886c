"""Does composition pay off? Routed learner vs uniform routing vs monolithic MAML of equal size.

Trains each variant with the same budget (meta-iterations, meta-batch, seeds) on the compositional
family, then reports query MSE after the configured inner steps (K = 10) on in-distribution and on
held-out (f, g) combinations (mean over seeds, 95% t-interval over seeds), and routing purity: NMI
between the joint slot choice and the joint true (f, g), and the accuracy after matching each
slot's candidates to its primitives one to one (Hungarian; slot i scored against factor i).

    python scripts/bench_composition.py                 # 5 variants x 3 seeds (2 shared CPU cores: ~30 min)
    python scripts/bench_composition.py --tasks 200 --variants id-structured id-search id-uniform id-maml
                                                        # the identifiable primitive set (docs/router.md)
    python scripts/bench_composition.py --tasks 200 --variants id-program id-uniform-context id-maml-context
                                                        # the family's (f, g) descriptor given to all three
    python scripts/bench_composition.py --tasks 200 --variants id-program-sin id-maml-sin
                                                        # periodic modules + modulation anchors vs MAML
    python scripts/bench_composition.py --tasks 200 --per-pair --variants id-program-sin-duo id-maml-sin-duo id-uniform-sin-duo
                                                        # solo tasks on both sides, 8000 it: the issue-3 table
    python scripts/bench_composition.py --sinusoid      # routed vs plain MAML on configs/sinusoid.yaml
    python scripts/bench_composition.py --oracle identifiable --tasks 200
                                                        # the error floor: the true (f, g) and their
                                                        # forms known, p by grid search, A by least squares
    python scripts/bench_composition.py --variants wide sums --tasks 200
                                                        # a second primitive set; the sum structure
    python scripts/bench_composition.py --variants routed --set task.args.preset=identifiable \
        'task.args.outer=[sin_freq,abs_shift,gauss,exp_rate]' task.args.held_out=[]
                                                        # any primitive set of the registry
    python scripts/bench_composition.py --oracle configs/sums.yaml --tasks 200
                                                        # the error floor of any config's family
    python scripts/bench_composition.py --oracle configs/from_data_sums_annealed_set3.yaml \
        --oracle-fit offset --tasks 200                 # ... when the fit has an offset c, as the
                                                        # annealed learner's has by default
    python scripts/bench_composition.py --from-data --tasks 200
                                                        # routing from data (configs/from_data*.yaml)
                                                        # vs descriptor-routed, uniform, MAML and the
                                                        # oracle on the same tasks, 3 structures/sets;
                                                        # then evaluation seconds per task
    python scripts/bench_composition.py --variants fdsa fdsa-desc fdsa-desc-data fdsa-maml \
        fdsa-oracle --tasks 200                         # the sum structure routed from data by
                                                        # annealing (algo.name: annealed_sum) vs
                                                        # descriptor routing, MAML and the oracle;
                                                        # fdsa2*, fdsa3*: a second, third primitive set
    python scripts/bench_composition.py --sum-em --steps 2500 --tasks 200
                                                        # the sum structure's closed-form hard EM
                                                        # (composer/router/sum_em.py), from data and
                                                        # descriptor-routed; MAML: --variants fds-maml

The t-intervals over seeds need scipy (``pip install 'metacompose[data]'``).
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from metacompose.cli import args as cli_args
from metacompose.cli.args import at_least, meta_steps, positive_int
from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import run_script
from metacompose.config import load_config
from metacompose.evaluate import family_purity
from metacompose.optional import MissingExtraError, require
from metacompose.progress import progress, say
from metacompose.router.metrics import routing_purity
from metacompose.tasks.base import derive_seed
from metacompose.tasks.structures import Chain

VARIANTS = {
    "routed": "configs/compositional.yaml",
    "search": "configs/compositional_search.yaml",
    "structured": "configs/compositional_structured.yaml",
    "uniform": "configs/compositional_uniform.yaml",
    "maml": "configs/compositional_maml.yaml",
    # the same variants on the identifiable primitive set (task.args.preset: identifiable)
    "id-structured": "configs/compositional_identifiable_structured.yaml",
    "id-search": "configs/compositional_identifiable_search.yaml",
    "id-uniform": "configs/compositional_identifiable_uniform.yaml",
    "id-maml": "configs/compositional_identifiable_maml.yaml",
    # with the (f, g) one-hot descriptor: program-given routing and its two baselines
    "id-program": "configs/compositional_identifiable_program.yaml",
    "id-uniform-context": "configs/compositional_identifiable_uniform_context.yaml",
    "id-maml-context": "configs/compositional_identifiable_maml_context.yaml",
    # periodic (sine-activation) modules: program-given routing with modulation anchors, and MAML
    "id-program-sin": "configs/compositional_identifiable_program_sin.yaml",
    "id-maml-sin": "configs/compositional_identifiable_maml_sin.yaml",
    "id-program-sin-solo": "configs/compositional_identifiable_program_sin_solo.yaml",
    "id-maml-sin-solo": "configs/compositional_identifiable_maml_sin_solo.yaml",
    "id-program-sin-duo": "configs/compositional_identifiable_program_sin_duo.yaml",
    "id-maml-sin-duo": "configs/compositional_identifiable_maml_sin_duo.yaml",
    "id-uniform-sin-duo": "configs/compositional_identifiable_uniform_sin_duo.yaml",
    # routing from data (hard EM, no descriptor) on the sin_duo pool and tasks; no "-" in its name,
    # so variant_overrides leaves it as written (docs/experiments/router_pilots.md)
    "fdduo": "configs/from_data_duo.yaml",
    # a second primitive set (parametric outer primitives) and the sum structure y = a f + b g
    "wide": "configs/compositional_wide.yaml",
    "sums": "configs/sums.yaml",
}
# Routing from data by deterministic annealing (algo.name: annealed_sum) on the sum structure:
# fdsa the primitive set of from_data_sums.yaml, fdsa2 a second one, fdsa3 a third (chosen after
# the settings, for a check on a set they were not chosen on); on the chain: fdca; -desc: trained and routed by
# the (f, g) descriptor (the upper bound); -desc-data: trained by the descriptor, routed from data;
# -uniform: no routing (each slot the mean of its candidates at one shared context); -restarted:
# block restarts, the polish and the distil after training (restart.order=fgpd; sums only);
# -maml: MAML on the same tasks (13,453 parameters); -maml-equal: MAML of one replica's size
# (equal_hidden); -oracle: the true primitives' formulas.
ANNEALED = {
    "fdsa": "configs/from_data_sums_annealed.yaml",
    "fdsa2": "configs/from_data_sums_annealed_set2.yaml",
    "fdsa3": "configs/from_data_sums_annealed_set3.yaml",
    "fdca": "configs/from_data_chain_annealed.yaml",
}
ANNEALED_OVERRIDES = {
    "-desc": ["task.args.descriptor=onehot", "algo.args.routing=descriptor"],
    "-desc-data": [
        "task.args.descriptor=onehot",
        "algo.args.routing=descriptor",
        "algo.args.eval_routing=data",
    ],
    "-uniform": ["algo.args.routing=uniform"],
    "-restarted": ["restart.order=fgpd"],
}
for _p, _config in ANNEALED.items():
    VARIANTS[_p] = VARIANTS[f"{_p}-desc"] = VARIANTS[f"{_p}-desc-data"] = _config
    VARIANTS[f"{_p}-uniform"] = _config
    if _p != "fdca":  # block restarts need the sum's two banks
        VARIANTS[f"{_p}-restarted"] = _config
    VARIANTS[f"{_p}-oracle"] = _config
    VARIANTS[f"{_p}-maml"] = "configs/compositional_identifiable_maml.yaml"
    VARIANTS[f"{_p}-maml-equal"] = "configs/compositional_identifiable_maml.yaml"
# --set keys that describe the routed learner, not MAML: they size -maml-equal and are not applied to
# the MAML variants (which refuse them); the MAML variants read the routed config's task
ROUTED_ONLY = ("algo.args.", "router.", "restart.")


def equal_hidden(cfg) -> list[int]:
    """The hidden widths ``[h, h]`` of an MLP 1-h-h-1 (``h^2 + 4h + 1`` parameters) nearest one
    replica of the annealed learner ``cfg`` builds, as configured (the sum configs' 288-knot tables:
    2,320 parameters, 1-46-46-1 has 2,301; the chain's 96-knot tables: 784, 1-26-26-1 781)."""
    from metacompose.build import build_family, build_learner

    learner = build_learner(cfg, build_family(cfg.task))
    per_replica = sum(p.numel() for p in learner.parameters()) / len(learner.f_banks)
    low = max(1, math.floor(math.sqrt(per_replica + 3) - 2))  # (h + 2)^2 = n + 3
    h = min((low, low + 1), key=lambda w: abs(w * w + 4 * w + 1 - per_replica))
    return [h, h]


# Routing from data (no descriptor: hard EM over joint choices + amortised top-k router) and, on the
# very same tasks, budget and template, its comparison: descriptor-routed (the family's (f, g)
# one-hot routes each slot; the upper bound), uniform routing, monolithic MAML of equal size
# (within 10% parameters) and the oracle (the true primitives' formulas; no training).
FROM_DATA = {"fd": "configs/from_data.yaml", "fdw": "configs/from_data_wide.yaml",
             "fds": "configs/from_data_sums.yaml",
             "fdc": "configs/from_data_ctx.yaml"}  # fmt: skip
MAML_CONFIG = "configs/compositional_identifiable_maml.yaml"
for _p, _config in FROM_DATA.items():
    VARIANTS[_p] = _config
    VARIANTS[f"{_p}-desc"] = _config
    VARIANTS[f"{_p}-uniform"] = _config
    VARIANTS[f"{_p}-maml"] = MAML_CONFIG
    VARIANTS[f"{_p}-oracle"] = _config
FROM_DATA_VARIANTS = [f"{p}{s}" for p in FROM_DATA for s in ("", "-desc", "-uniform", "-maml")]


def variant_overrides(variant: str, user: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Overrides that turn a ``from_data*.yaml`` config into its comparison variants; ``user``
    (``--set``): the routed config as the MAML variants read it (its task, one replica's size)."""
    prefix, _, kind = variant.partition("-")
    if prefix in ANNEALED and f"-{kind}" in ANNEALED_OVERRIDES:
        return ANNEALED_OVERRIDES[f"-{kind}"]
    if (prefix not in FROM_DATA and prefix not in ANNEALED) or not kind:
        return []
    if kind in ("maml", "maml-equal"):  # the data-routed config's task (its points per task too),
        # MAML's model and algorithm
        source = ANNEALED.get(prefix) or FROM_DATA[prefix]
        routed = load_config(source, [o for o in user if o.startswith((*ROUTED_ONLY, "task."))])
        args = OmegaConf.to_container(routed.task.args)
        width = [f"model.args.hidden={equal_hidden(routed)}"] if kind == "maml-equal" else []
        points = [f"task.shots={routed.task.shots}", f"task.query={routed.task.query}"]
        task = f"task.args={json.dumps(args)}"  # JSON is YAML: one flow-style value
        return [task, *points, *width]
    if prefix in ANNEALED:  # -oracle: as written
        return []
    if kind == "uniform":
        return ["router.routing=uniform", "router.eval_routing=router"]
    slots = load_config(FROM_DATA[prefix]).router.template
    routed = [n for n, v in slots.nodes.items() if v.get("candidates")]
    spans = ", ".join(f"{s}: [{4 * i}, {4 * i + 4}]" for i, s in enumerate(routed))
    return [
        "task.args.descriptor=onehot", "router.routing=learned", "router.eval_routing=router",
        f"router.descriptor_dim={4 * len(routed)}", f"router.descriptor_slots={{{spans}}}",
        "router.descriptor_one_to_one=true", "router.tau_end=0.05",
    ]  # fmt: skip


def run_overrides(variant: str, user: list[str]) -> list[str]:
    """One variant's overrides, then ``--set``'s ``user``; the MAML variants of a routed config
    read its ``algo.args.``/``router.`` keys for their size instead of taking them."""
    routed = variant.split("-")[0] in {*FROM_DATA, *ANNEALED}
    maml = routed and variant.endswith(("-maml", "-maml-equal"))
    kept = [o for o in user if not (maml and o.startswith(ROUTED_ONLY))]
    return variant_overrides(variant, user) + kept


def meta_test_batches(family, *, n_tasks: int, combos: str | None, shots: int, seed: int):
    """The seeded meta-test tasks of one combination set, in batches of at most 100."""
    g = torch.Generator().manual_seed(derive_seed(seed, "test", "bench", combos))
    kw = {} if combos is None else {"subset": combos}
    for done in range(0, n_tasks, 100):
        b = min(100, n_tasks - done)
        yield family.sample(b, shots=shots, query=shots, generator=g, split="test", **kw)


def split_mse(learner, family, *, n_tasks: int, combos: str | None, shots: int, seed: int):
    """Per-task query MSE after ``eval_inner_steps`` on meta-test tasks of one combination set."""
    kw = {"n_tasks": n_tasks, "combos": combos, "shots": shots, "seed": seed}
    return split_mse_pairs(learner, family, **kw)[0]


def split_mse_pairs(learner, family, *, n_tasks: int, combos: str | None, shots: int, seed: int):
    """``(mse, pairs)``: per-task query MSE as :func:`split_mse`, and each task's ``"f∘g"``
    (chain) or ``"f+g"`` (sum) name (empty when the family exposes no ``f``/``g``)."""
    mse, pairs = [], []
    for b in meta_test_batches(family, n_tasks=n_tasks, combos=combos, shots=shots, seed=seed):
        mse.append(learner.evaluate(b)[-1])
        if {"f", "g"} <= set(b.info):
            names = family.factors
            join = getattr(getattr(family, "structure", None), "join", "∘")
            pairs += [
                f"{names['f'][int(f)]}{join}{names['g'][int(g)]}"
                for f, g in zip(b.info["f"], b.info["g"])
            ]
    return torch.cat(mse).double(), pairs


def pair_table(per_pair: dict[str, dict[str, list[float]]]) -> str:
    """Variant x (f, g) pair table of mean query MSE over seeds (and tasks)."""
    pairs = sorted({p for v in per_pair.values() for p in v})
    width = max(len(v) for v in per_pair)
    lines = [f"{'pair':16s} " + " ".join(f"{v:>{width}s}" for v in per_pair)]
    for p in pairs:
        cells = []
        for v in per_pair.values():
            xs = v.get(p, [])
            cells.append(f"{sum(xs) / len(xs):>{width}.4f}" if xs else f"{'-':>{width}s}")
        lines.append(f"{p:16s} " + " ".join(cells))
    return "\n".join(lines)


def routing_scores(
    learner, family, *, n_tasks: int, shots: int, seed: int, combos: str = "all"
) -> dict:
    """Routing purity of the hard choices on meta-test tasks of one combination set (``all``,
    ``seen`` or ``held_out``; :func:`metacompose.router.metrics.routing_purity`: joint NMI; per
    slot NMI and the accuracy after matching candidates to primitives); empty for an unrouted
    learner."""
    if not hasattr(learner, "choices") or not learner.graph.routed_slots:
        return {}
    tag = "nmi" if combos == "all" else f"nmi-{combos}"
    g = torch.Generator().manual_seed(derive_seed(seed, "test", "bench", tag))
    batch = family.sample(
        n_tasks, shots=shots, query=shots, generator=g, split="test", subset=combos
    )
    with torch.no_grad():
        ch = learner.choices(batch)
    if not ch:
        return {}
    truth = {f: batch.info[f].tolist() for f in family.factors}
    return family_purity(learner, family, {s: c.tolist() for s, c in ch.items()}, truth)


# what the oracle fits besides the parameters: "clamped", the amplitudes within the family's range
# (the tasks' own model); "free", amplitudes of any sign and size (what the annealed learner fits
# with algo.args.offset=false); "offset", those and an offset c (the annealed learner's default)
ORACLE_FITS = ("clamped", "free", "offset")


def oracle_fit(family, f, o, sx, sy, qx, fit: str = "clamped") -> tuple[torch.Tensor, torch.Tensor]:
    """``(support MSE, query prediction)`` of one task under the primitives ``f`` and ``o`` (their
    formulas known): the parameters by grid search on the support set (401 points for one
    parameter, 41 x 41 for two), the amplitudes by least squares (``fit``: see ``ORACLE_FITS``)."""
    structure = getattr(family, "structure", Chain())
    lo, hi = family.param_range
    if o.param is None:
        p, q = torch.linspace(lo, hi, 401).view(-1, 1, 1), None
    else:
        grid = torch.linspace(lo, hi, 41)
        p, q = (v.reshape(-1, 1, 1) for v in torch.meshgrid(grid, grid, indexing="ij"))

    def terms(x, p, q) -> list[torch.Tensor]:
        phi = list(structure.terms(f, o, x, p, q))
        return [*phi, torch.ones_like(phi[0])] if fit == "offset" else phi

    phi = terms(sx[None], p, q)  # each (grid, K, 1)
    limits = family.amplitude if fit == "clamped" else None
    amp = least_squares_amplitudes(phi, sy[None], limits)  # (grid, terms)
    pred = sum(amp[:, k].view(-1, 1, 1) * phi[k] for k in range(len(phi)))
    losses = ((pred - sy[None]) ** 2).mean((1, 2))
    best = losses.argmin()
    at = terms(qx, p[best], None if q is None else q[best])
    return losses[best], sum(amp[best, k] * at[k] for k in range(len(at)))


def oracle_mse(
    family, *, n_tasks: int, combos: str, shots: int, seed: int, fit: str = "clamped"
) -> torch.Tensor:
    """Per-task query MSE of an oracle that knows each task's (f, g) and the primitives' formulas
    (:func:`oracle_fit`). Not a learner: how much ``shots`` points determine a task."""
    f_reg, g_reg = getattr(family, "structure", Chain()).registries
    out = []
    for b in meta_test_batches(family, n_tasks=n_tasks, combos=combos, shots=shots, seed=seed):
        for i in range(b.num_tasks):
            f = f_reg[family.inner[int(b.info["f"][i])]]
            o = g_reg[family.outer[int(b.info["g"][i])]]
            _, pred = oracle_fit(family, f, o, b.support_x[i], b.support_y[i], b.query_x[i], fit)
            out.append(((pred - b.query_y[i]) ** 2).mean())
    return torch.stack(out).double()


def oracle_routing(family, *, n_tasks: int, combos: str, shots: int, seed: int, fit="clamped"):
    """``(per-task query MSE, routing purity)`` of the oracle routed *from data*: the primitives'
    formulas known, each task's (f, g) taken as the pair with the lowest support MSE after
    :func:`oracle_fit` over every (f, g) of the family's sets. It bounds how well any router can
    tell the composition from ``shots`` points of these primitives (lowest support loss, no prior)."""
    f_reg, g_reg = getattr(family, "structure", Chain()).registries
    pairs = [(i, j) for i in range(len(family.inner)) for j in range(len(family.outer))]
    out, picked, truth = [], {"f": [], "g": []}, {"f": [], "g": []}
    for b in meta_test_batches(family, n_tasks=n_tasks, combos=combos, shots=shots, seed=seed):
        for t in range(b.num_tasks):
            fits = [
                oracle_fit(family, f_reg[family.inner[i]], g_reg[family.outer[j]],
                           b.support_x[t], b.support_y[t], b.query_x[t], fit)
                for i, j in pairs
            ]  # fmt: skip
            k = int(torch.stack([loss for loss, _ in fits]).argmin())
            out.append(((fits[k][1] - b.query_y[t]) ** 2).mean())
            for slot, choice in zip(("f", "g"), pairs[k]):
                picked[slot].append(choice)
                truth[slot].append(int(b.info[slot][t]))
    sizes = {"f": len(family.inner), "g": len(family.outer)}
    return torch.stack(out).double(), routing_purity(picked, truth, family.factors, sizes)


def least_squares_amplitudes(phi: list[torch.Tensor], y: torch.Tensor, limits) -> torch.Tensor:
    """``(grid, len(phi))`` amplitudes fitting ``y ~ sum_k a_k phi_k`` (each ``(grid, K, 1)``),
    clamped to ``limits`` (``None``: not clamped)."""
    lo, hi = limits or (None, None)
    if len(phi) == 1:
        (t,) = phi
        amp = (t * y).sum((1, 2)) / (t * t).sum((1, 2)).clamp_min(1e-12)
        return (amp if limits is None else amp.clamp(lo, hi))[:, None]
    design = torch.cat(phi, dim=2).double()  # (grid, K, terms)
    gram = design.transpose(1, 2) @ design + 1e-9 * torch.eye(len(phi), dtype=torch.float64)
    # pinv: a term constant over the support points (the chain's g at some parameters) next to
    # the offset column makes the normal equations singular
    amp = (torch.linalg.pinv(gram) @ design.transpose(1, 2) @ y.double())[..., 0].to(y.dtype)
    return amp if limits is None else amp.clamp(lo, hi)


def bench_oracle(args) -> None:
    from metacompose.tasks import CompositionalFamily

    if args.oracle.endswith(".yaml"):  # a config: its family, with the --set overrides
        from metacompose.build import build_family

        family = build_family(load_config(args.oracle, args.set).task)
    else:
        family = CompositionalFamily(preset=args.oracle)
    fit = args.oracle_fit
    print(f"oracle query MSE, {args.oracle!r}, K={args.shots}, {args.tasks} tasks per split and "
          f"seed; amplitudes: {fit}")  # fmt: skip
    with progress(args.seeds, desc="oracle", unit="seed") as bar:
        for seed in bar:
            seen, held = (
                oracle_mse(
                    family, n_tasks=args.tasks, combos=c, shots=args.shots, seed=seed, fit=fit
                )
                for c in ("seen", "held_out")
            )
            say(
                f"seed {seed}: in-distribution {seen.mean():.2e} (max {seen.max():.2e}), "
                f"held-out {held.mean():.2e} (max {held.max():.2e})"
            )
            for c in ("seen", "held_out"):
                mse, purity = oracle_routing(
                    family, n_tasks=args.tasks, combos=c, shots=args.shots, seed=seed, fit=fit
                )
                say(f"seed {seed}: routed from data by support search, {c}: query MSE "
                    f"{mse.mean():.2e}, {purity_line(purity)}")  # fmt: skip


def ci95(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    stats = require("scipy.stats", extra="data", purpose="bench_composition's t-interval")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)


def train_variant(config: str, seed: int, steps: int | None, out_dir: str, name: str, extra=()):
    from metacompose.evaluate import load_checkpoint
    from metacompose.training import train

    overrides = [
        f"seed={seed}",
        f"out_dir={out_dir}",
        f"name={name}",
    ]
    overrides += list(extra)
    if steps is not None:
        overrides.append(f"trainer.max_steps={steps}")
    cfg = load_config(config, overrides)
    result = train(cfg, config_name=Path(config).stem)
    learner, cfg, family = load_checkpoint(result.checkpoint)
    return learner, cfg, family, result.seconds


def bench_composition(args) -> None:
    rows, per_pair = {}, {}
    runs = [(variant, seed) for variant in args.variants for seed in args.seeds]
    with progress(runs, desc="bench_composition", unit="run") as bar:
        for variant, seed in bar:
            bench_one(args, variant, seed, rows, per_pair)
    print(
        f"\nquery MSE after the configured inner steps, K=10, {args.tasks} tasks per split and seed;"
    )
    one = " (one seed: no interval, '± -')" if len(args.seeds) < 2 else ""
    print(
        f"mean over seeds {args.seeds} with 95% t-interval over seeds{one}; matched accuracy: mean"
    )
    print("over slots (sums: both slots matched, scored as a set: either bank may hold either)\n")
    print(
        f"{'variant':18s} {'params':>7s} {'in-distribution':>20s} {'held-out':>20s} "
        f"{'NMI joint':>16s} {'matched acc':>16s} {'NMI held-out':>16s} {'acc held-out':>16s}"
    )
    for variant, rs in rows.items():
        i_m, i_c = ci95([r[0] for r in rs])
        h_m, h_c = ci95([r[1] for r in rs])
        cols = [
            interval([score(r[i]) for r in rs if len(r) > i and r[i]])
            for i in (2, 4)
            for score in (lambda p: p["joint_nmi"], mean_accuracy)
        ]
        print(
            f"{variant:18s} {rs[0][3]:>7d} {num(i_m):>10s} ± {half(i_c):<7s} {num(h_m):>10s} ± "
            f"{half(h_c):<7s} " + " ".join(f"{c:>16s}" for c in cols)
        )
    if args.per_pair and any(per_pair.values()):
        print("\nper (f, g) pair: mean query MSE over seeds and tasks (* held-out)\n")
        print(pair_table(per_pair))
    if any(r[2] for rs in rows.values() for r in rs):
        print(
            "\nper seed: held-out MSE, joint NMI, matched accuracy (mean over slots; sums: both "
            "slots, as a set), all pairs"
        )
        print("then joint NMI / matched accuracy on held-out pairs only, and on seen pairs only\n")
        for variant, rs in rows.items():
            if rs[0][2]:
                cells = [
                    " / ".join([f"{r[1]:.4f}", *(f"{p['joint_nmi']:.3f} / {mean_accuracy(p):.3f}"
                                                 for p in (r[2], r[4], r[5]))])
                    for r in rs
                ]  # fmt: skip
                print(f"{variant:18s} " + "   ".join(cells))
    eval_seconds(args.timed, tasks=min(args.tasks, 100))


def interval(values: list[float]) -> str:
    """``mean ± 95% half-width`` over seeds (``± -`` for one seed), or ``-`` without values."""
    if not values:
        return "-"
    mean, half = ci95(values)
    return f"{mean:.3f} ± " + ("-" if half != half else f"{half:.3f}")


def num(x: float) -> str:
    """4 decimals, or 2 significant digits below 0.001 (the oracle's error floor)."""
    return f"{x:.1e}" if 0 < abs(x) < 1e-3 else f"{x:.4f}"


def half(x: float) -> str:
    """An interval's half-width as :func:`num`; ``-`` for one seed (no interval)."""
    return "-" if x != x else num(x)


def mean_accuracy(purity: dict) -> float:
    """Matched accuracy averaged over the routed slots; for interchangeable slots (the sum) the
    fraction of tasks with both primitives matched, scored as a set (``as_set``)."""
    if "as_set" in purity:
        return purity["as_set"]["joint_accuracy"]
    return sum(r["accuracy"] for r in purity["slots"].values()) / len(purity["slots"])


def purity_line(purity: dict) -> str:
    """``joint NMI x; inner NMI x acc y; ...`` or ``-``."""
    if not purity:
        return "-"
    slots = "; ".join(
        f"{s} NMI {r['nmi']:.3f} acc {r['accuracy']:.3f}" for s, r in purity["slots"].items()
    )
    both = purity.get("as_set", {}).get("joint_accuracy")
    as_set = "" if both is None else f"; as a set: both matched {both:.3f}"
    return f"joint NMI {purity['joint_nmi']:.3f}; {slots}{as_set}"


def bench_one(args, variant: str, seed: int, rows: dict, per_pair: dict) -> None:
    """Train one variant with one seed, print its line, and add it to ``rows`` and ``per_pair``."""
    if variant.endswith("-oracle"):
        return bench_oracle_row(args, variant, seed, rows)
    extra = run_overrides(variant, args.set)
    learner, cfg, family, secs = train_variant(
        VARIANTS[variant], seed, args.steps, args.out_dir, f"{variant}-s{seed}", extra
    )
    routed_from_data = variant.split("-")[0] in {*FROM_DATA, *ANNEALED}
    if routed_from_data and not variant.endswith(("-maml", "-maml-equal", "-uniform")):
        args.timed.setdefault(variant, []).append((learner, family, seed))
    n_params = sum(p.numel() for p in learner.parameters())
    shots = cfg.task.shots
    idd, idd_pairs = split_mse_pairs(
        learner, family, n_tasks=args.tasks, combos="seen", shots=shots, seed=seed
    )
    held, held_pairs = split_mse_pairs(
        learner, family, n_tasks=args.tasks, combos="held_out", shots=shots, seed=seed
    )
    table = per_pair.setdefault(variant, {})
    for m, p in zip(torch.cat([idd, held]).tolist(), idd_pairs + held_pairs):
        table.setdefault(p + (" *" if p in held_pairs else ""), []).append(m)
    nmi = routing_scores(learner, family, n_tasks=args.tasks, shots=shots, seed=seed)
    held_nmi, seen_nmi = (
        routing_scores(learner, family, n_tasks=args.tasks, shots=shots, seed=seed, combos=c)
        for c in ("held_out", "seen")
    )
    rows.setdefault(variant, []).append(
        (idd.mean().item(), held.mean().item(), nmi, n_params, held_nmi, seen_nmi)
    )
    say(
        f"{variant:18s} seed {seed}: params {n_params}, train {secs:.0f} s, "
        f"{cfg.trainer.max_steps} it, ID MSE {idd.mean():.4f}, held-out MSE {held.mean():.4f}, "
        f"routing (all pairs) {purity_line(nmi)}; held-out pairs {purity_line(held_nmi)}; "
        f"seen pairs {purity_line(seen_nmi)}"
    )


def bench_oracle_row(args, variant: str, seed: int, rows: dict) -> None:
    """The oracle's row of a ``from_data*.yaml`` comparison (no training, no parameters)."""
    from metacompose.build import build_family

    family = build_family(load_config(VARIANTS[variant], list(args.set)).task)
    kw = {"n_tasks": args.tasks, "shots": 10, "seed": seed}
    idd = oracle_mse(family, combos="seen", **kw)
    held = oracle_mse(family, combos="held_out", **kw)
    rows.setdefault(variant, []).append((idd.mean().item(), held.mean().item(), {}, 0))
    say(f"{variant:18s} seed {seed}: ID MSE {idd.mean():.2e}, held-out MSE {held.mean():.2e}")


def eval_seconds(timed: dict, *, tasks: int, rounds: int = 3) -> None:
    """Evaluation seconds per held-out task of each kept learner, the variants interleaved round by
    round in this one process (so that machine load hits them alike); median over rounds."""
    if not timed:
        return
    import os

    secs: dict[str, list[float]] = {v: [] for v in timed}
    for _ in range(rounds):
        for variant, runs in timed.items():
            for learner, family, seed in runs:
                batches = list(meta_test_batches(family, n_tasks=tasks, combos="held_out",
                                                 shots=10, seed=seed))  # fmt: skip
                start = time.perf_counter()
                for b in batches:
                    learner.evaluate(b)
                secs[variant].append((time.perf_counter() - start) / tasks)
    print(
        f"\nevaluation seconds per task ({tasks} held-out tasks, all inner steps; median over "
        f"{rounds} interleaved rounds and the seeds; load average {os.getloadavg()[0]:.1f})\n"
    )
    for variant, xs in secs.items():
        print(f"{variant:18s} {sorted(xs)[len(xs) // 2] * 1e3:8.2f} ms/task")


SUM_EM = {"candidates": 4, "hidden": 38, "contexts": 12, "ridge": 1.0}  # 13080 parameters


def bench_sum_em(args) -> None:
    """Closed-form hard EM on the sum structure (:mod:`metacompose.router.sum_em`) on the tasks of
    ``from_data_sums.yaml``: trained from data (``sem``) and by the descriptor (``sem-desc``,
    evaluated both routed from data and by its descriptor); meta-batch 16, Adam 1e-2."""
    from metacompose.build import build_family
    from metacompose.router.sum_em import build_sum_em, train_sum_em

    cfg = load_config(FROM_DATA["fds"], ["task.args.descriptor=onehot", *args.set])
    family, steps, rows = build_family(cfg.task), args.steps or 2500, {}
    for routing, seed in [(r, s) for r in ("em", "descriptor") for s in args.seeds]:
        init = derive_seed(seed, "init") % (2**31)
        learner = build_sum_em(**SUM_EM, routing=routing, seed=init)
        start = time.perf_counter()
        train_sum_em(learner, family, steps=steps, meta_batch=16, lr=1e-2, seed=seed)
        secs = time.perf_counter() - start
        names = ["sem"] if routing == "em" else ["sem-desc-fromdata", "sem-desc"]
        for name, training in zip(names, (False, True)):
            row = [sum_em_split(learner, family, c, training, args.tasks, seed) for c in SPLITS]
            rows.setdefault(name, []).append(row)
            say(f"{name:18s} seed {seed}: train {secs:.0f} s, {steps} it, " + "; ".join(
                f"{c} MSE {m:.4f}, {purity_line(p)}" for c, (m, p) in zip(SPLITS, row)))  # fmt: skip
    print(f"\n{'variant':18s} {'in-distribution':>16s} {'held-out':>16s} {'NMI seen':>16s} "
          f"{'NMI held-out':>16s} {'acc held-out':>16s}")  # fmt: skip
    for name, seeds in rows.items():
        cols = [[r[0][0] for r in seeds], [r[1][0] for r in seeds]]
        cols += [[r[0][1]["joint_nmi"] for r in seeds], [r[1][1]["joint_nmi"] for r in seeds]]
        cols += [[mean_accuracy(r[1][1]) for r in seeds]]
        print(f"{name:18s} " + " ".join(f"{interval(c):>16s}" for c in cols))


SPLITS = ("seen", "held_out")


def sum_em_split(learner, family, combos: str, descriptor: bool, tasks: int, seed: int):
    """``(mean query MSE, routing purity)`` of a :class:`SumEMLearner` on one combination set,
    routed by the support MSE (``descriptor``: by the family's descriptor)."""
    mse, picked, truth = [], {"f": [], "g": []}, {"f": [], "g": []}
    with torch.no_grad():
        for b in meta_test_batches(family, n_tasks=tasks, combos=combos, shots=10, seed=seed):
            choice = learner.choose(b, training=descriptor)
            mse.append(learner.query_mse(b, choice))
            for slot, c in (("f", choice.f), ("g", choice.g)):
                picked[slot] += c.tolist()
                truth[slot] += b.info[slot].tolist()
    sizes = {"f": learner.f_bank.candidates, "g": learner.g_bank.candidates}
    return torch.cat(mse).mean().item(), routing_purity(picked, truth, family.factors, sizes)


def bench_sinusoid(args) -> None:
    """Routed learner (pool of 4 candidates per slot) vs plain MAML on configs/sinusoid.yaml."""
    router = load_config("configs/compositional.yaml").router
    router.template.nodes.inner.args.activation = "relu"
    router.template.nodes.outer.args.activation = "relu"
    template = OmegaConf.to_container(router, resolve=True)
    with tempfile.TemporaryDirectory() as tmp:
        routed_cfg = Path(tmp) / "sinusoid_routed.yaml"
        base = OmegaConf.merge(load_config("configs/sinusoid.yaml"), {"router": template})
        OmegaConf.save(base, routed_cfg)
        from metacompose.evaluate import evaluate

        variants = (("maml", "configs/sinusoid.yaml"), ("routed", str(routed_cfg)))
        with progress(
            desc="bench_composition --sinusoid", total=2 * len(args.seeds), unit="run"
        ) as bar:
            for variant, config in variants:
                res = []
                for seed in args.seeds:
                    learner, cfg, family, secs = train_variant(
                        config, seed, args.steps, args.out_dir, f"sin-{variant}-s{seed}"
                    )
                    r = evaluate(
                        learner,
                        family,
                        n_tasks=args.tasks,
                        steps=cfg.algo.eval_inner_steps,
                        seed=seed,
                    )
                    res.append(r.mean[-1])
                    bar.update(1)
                    say(
                        f"sinusoid {variant:6s} seed {seed}: params {sum(p.numel() for p in learner.parameters())}, "
                        f"train {secs:.0f} s, {cfg.trainer.max_steps} it, MSE after "
                        f"{cfg.algo.eval_inner_steps} steps {r.mean[-1]:.4f} ± {r.ci95[-1]:.4f}"
                    )
                m, c = ci95(res)
                say(f"sinusoid {variant:6s}: {m:.4f} ± {c:.4f} (95% t over seeds)")


def main() -> None:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS)[:5], choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=cli_args.seed, default=[0, 1, 2])
    p.add_argument(
        "--steps", type=meta_steps, default=None, help="meta-iterations (default: the configs')"
    )
    p.add_argument(
        "--tasks", type=positive_int, default=400, help="meta-test tasks per split and seed"
    )
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every variant (e.g. router.anchors=16; the MAML variants of a "
        "routed config are sized by its algo./model./router. keys, not given them); say them "
        "when quoting",
    )
    p.add_argument("--per-pair", action="store_true", help="also print MSE per (f, g) pair")
    p.add_argument(
        "--from-data",
        action="store_true",
        help="the routing-from-data comparison (every fd*/fdw*/fds* variant, oracles included)",
    )
    p.add_argument("--out-dir", default=None, help="run folders (default: a temporary folder)")
    p.add_argument("--sinusoid", action="store_true", help="routed vs MAML on the sinusoid config")
    p.add_argument(
        "--sum-em",
        action="store_true",
        help="closed-form hard EM on the sum structure (from data and descriptor-routed)",
    )
    p.add_argument(
        "--oracle",
        metavar="PRESET|CONFIG",
        default=None,
        help="error floor of a preset's family or a config's (with --set; no training), and the "
        "oracle routed from data: the pair with the lowest support MSE, its routing purity",
    )
    p.add_argument(
        "--shots", type=at_least(1), default=10, help="support points per task (--oracle)"
    )
    p.add_argument(
        "--oracle-fit",
        choices=ORACLE_FITS,
        default="clamped",
        help="--oracle's amplitudes: clamped to the family's range (default), free (any sign and "
        "size: what algo.args.offset=false fits), offset (free, and an offset c: what the annealed "
        "learner fits by default)",
    )
    args = p.parse_args()
    if args.oracle_fit != "clamped" and not args.oracle:
        p.error(f"--oracle-fit {args.oracle_fit}: only with --oracle")
    args.timed = {}
    if args.from_data:
        args.variants = [v for p in FROM_DATA for v in VARIANTS if v.split("-")[0] == p]
    if args.oracle:
        return bench_oracle(args)
    try:  # needed only for the final table: fail now, not after the training runs
        require("scipy.stats", extra="data", purpose="bench_composition's t-interval")
    except MissingExtraError as e:
        sys.exit(str(e))
    torch.set_num_threads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        args.out_dir = args.out_dir or tmp
        if args.sum_em:
            bench_sum_em(args)
        else:
            (bench_sinusoid if args.sinusoid else bench_composition)(args)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    run_script(main)
