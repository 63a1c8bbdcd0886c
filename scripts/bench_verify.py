"""Cost and tightness of certifying adaptations, and the price of enforcing a spec in the inner loop.

Part 1, per adaptation of a trained checkpoint (sinusoid 1-40-40-1; compositional: the routed
learner's per-task exported graphs when they convert, else the monolithic MAML baseline):

- ``fast ms``: ``metacompose.symbolic.certify(tier="fast")`` on every claim of the spec file;
- ``fast/true``: the fast tier's certified deviation bound over the true max (dense grid, 20,001
  points, 1-D);
- ``bnb/true`` and ``bnb s``: branch-and-bound tightened bound (rel. gap 1%, 5 s budget) over it;
- ``dec@1.1``: deviation claim set 10% above the true max, refine tier, 5 s: outcome and seconds;
- ``exact``: the same claim in the exact z3 tier (first ``--exact-tasks`` adaptations only);
- ``spec fast/refine``: fraction of the spec file's claims decided by each tier.

Part 3 (``--coverage``): every ``configs/*.yaml`` trains 3 meta-iterations (tiny overrides; glyph
configs on ``task.family=digits`` at 8x8, 2 conv stages of 4 filters: no fonts here) and its
checkpoint is verified against the spec its config names (``verify.spec``): exit code and claims.
``--soundness``: self-test counts over ReLU / tanh / sin MLPs and conv nets. ``--smooth``: tanh
and sin stand-in pairs (``--smooth-dims`` inputs), refine bound / best attack value and claims set
10% above the attack value; ``--smooth-checkpoint CKPT`` (repeatable): the same on a trained
checkpoint's per-task adaptations (e.g. the routed tanh and sin compositions). ``--classifier CKPT``:
prediction stability at rho = 0.001 and 0.01 (fraction of query images decided, s per image;
``--timeout`` bounds each claim and each shared bound pass, as `verify --timeout`).

Part 2 (``--enforce``): meta-test adaptation pushed far (inner lr x ``--lr-scale``, ``--steps``
steps) under enforce modes off / check / reject / project: query MSE, fraction of final
adaptations certified (re-checked from scratch), enforcement seconds per task.

    metacompose train configs/sinusoid.yaml trainer.max_steps=2000 out_dir=/tmp/v name=sin
    python scripts/bench_verify.py --sinusoid /tmp/v/sin/checkpoints/last.ckpt \
        --compositional /tmp/v/routed_relu/checkpoints/last.ckpt \
        --fallback /tmp/v/comp/checkpoints/last.ckpt --enforce
"""

from __future__ import annotations

import contextlib
import statistics
import time

import torch
from omegaconf import OmegaConf

from metacompose.build import build_learner
from metacompose.cli.args import (
    checkpoint,
    non_negative_int,
    positive_float,
    positive_int,
    seconds,
    seed,
)
from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import run_script
from metacompose.evaluate import load_checkpoint
from metacompose.progress import say, track
from metacompose.symbolic import (
    BoxDomain,
    DeviationBound,
    NonFiniteError,
    Objective,
    OutputRange,
    Proved,
    StabilitySpec,
    Unknown,
    branch_and_bound,
    certify,
    exact_check,
    load_spec,
)
from metacompose.symbolic.network import Activation
from metacompose.tasks.base import derive_seed
from metacompose.verify import (
    UnsupportedModuleError,
    adapt_tasks,
    module_params,
    pair_from_params,
)
from metacompose.verify.enforce import EnforcementStats


def true_max(pair, lo: float, hi: float) -> float:
    x = torch.linspace(lo, hi, 20001, dtype=torch.float64).reshape(-1, 1)
    with torch.no_grad():
        return float(pair.deviation(x).abs().max())


def fast_tier_bound(report, claim: str) -> float:
    """The bound the fast tier certified (or failed to certify) the claim with."""
    (r,) = [r for r in report.results if r.claim == claim]
    o = r.outcome
    bound = (
        o.certificate.bound
        if isinstance(o, Proved)
        else o.bound
        if isinstance(o, Unknown)
        else None
    )
    return float("nan") if bound is None else bound


def bench_adaptations(name, ckpt, spec_path, args, fallback=None) -> list[dict]:
    learner, cfg, family = load_checkpoint(ckpt)
    g = torch.Generator().manual_seed(derive_seed(args.seed, "test", "bench_verify"))
    batch = family.sample(
        args.tasks, shots=cfg.task.shots, query=cfg.task.query, generator=g, split="test"
    )
    ads = adapt_tasks(learner, batch)
    try:
        pairs = [(a, pair_from_params(a.graph, a.meta, a.adapted)) for a in ads]
        source = "routed export" if ads[0].choice else "graph"
    except UnsupportedModuleError as e:
        if fallback is None:
            raise
        print(f"# {name}: {e}; falling back to the monolithic baseline {fallback}")
        return bench_adaptations(name, fallback, spec_path, args)
    spec = load_spec(spec_path)
    lo, hi = spec.domain.lower[0], spec.domain.upper[0]
    print(f"\n## {name} ({source}: {ckpt}), spec {spec_path}, {len(pairs)} adaptations")
    print(
        f"{'task':>4} {'fast ms':>8} {'cpu ms':>7} {'fast/true':>9} {'bnb/true':>8} {'bnb s':>6} "
        f"{'dec@1.1':>9} {'dec s':>6} {'exact':>8} {'exact s':>7} {'spec fast':>9} "
        f"{'spec refine':>11}"
    )
    rows = []
    xlo = torch.tensor([[lo]], dtype=torch.float64)
    xhi = torch.tensor([[hi]], dtype=torch.float64)
    dev = Objective("deviation", 0)
    for t, (a, pair) in enumerate(track(pairs, desc=f"bench_verify: {name}", unit="task")):
        mp = module_params(a.graph, a.meta, a.adapted)
        certify(pair, spec, tier="fast", module_params=mp)  # warm caches
        times, cpu_times = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            rep_fast = certify(pair, spec, tier="fast", module_params=mp)
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
        fast_ms = 1000 * statistics.median(times)
        # CPU time of this (single-threaded) process: what the tier costs on a core of its own,
        # robust to other jobs on a shared machine (wall time is reported too).
        fast_cpu_ms = 1000 * statistics.median(cpu_times)
        tm = true_max(pair, lo, hi)
        # the fast tier's bound itself (a limit no adaptation reaches: the claim is never refuted)
        loose = StabilitySpec(domain=spec.domain, deviation=DeviationBound(max_abs=(1e9,)))
        fast_bound = fast_tier_bound(certify(pair, loose, tier="fast"), "deviation[0]")
        res = branch_and_bound(
            pair, dev, xlo, xhi, threshold=None, rel_gap=0.01, time_budget_s=args.timeout
        )
        claim = StabilitySpec(
            domain=BoxDomain(lower=(lo,), upper=(hi,)),
            deviation=DeviationBound(max_abs=(1.1 * tm,)),
        )
        t0 = time.perf_counter()
        dec = certify(pair, claim, tier="refine", timeout_s=args.timeout).results[0]
        dec_s = time.perf_counter() - t0
        ex_status, ex_s = "-", float("nan")
        if t < args.exact_tasks:
            t0 = time.perf_counter()
            ex_status = exact_check(
                pair, dev, 1.1 * tm, xlo, xhi, timeout_s=args.exact_timeout
            ).status
            ex_s = time.perf_counter() - t0
        rep_ref = certify(pair, spec, tier="refine", module_params=mp, timeout_s=args.timeout)

        def decided(rep):
            rs = [r for r in rep.results if r.status != "estimate"]
            return sum(r.status in ("proved", "violated") for r in rs) / max(1, len(rs))

        row = dict(
            fast_ms=fast_ms,
            fast_cpu_ms=fast_cpu_ms,
            fast_ratio=fast_bound / tm,
            bnb_ratio=res.upper / tm,
            bnb_s=res.seconds,
            dec=dec.status,
            dec_s=dec_s,
            exact=ex_status,
            exact_s=ex_s,
            spec_fast=decided(rep_fast),
            spec_refine=decided(rep_ref),
        )
        rows.append(row)
        say(
            f"{t:>4} {fast_ms:>8.1f} {fast_cpu_ms:>7.1f} {row['fast_ratio']:>9.3f} {row['bnb_ratio']:>8.4f} "
            f"{res.seconds:>6.2f} {dec.status:>9} {dec_s:>6.2f} {ex_status:>8} {ex_s:>7.2f} "
            f"{row['spec_fast']:>9.2f} {row['spec_refine']:>11.2f}"
        )
    n = len(rows)
    fr = sorted(r["fast_ratio"] for r in rows)
    print(
        f"summary {name}: fast median {statistics.median(r['fast_ms'] for r in rows):.1f} ms "
        f"(max {max(r['fast_ms'] for r in rows):.1f}), CPU time median "
        f"{statistics.median(r['fast_cpu_ms'] for r in rows):.1f} ms; refine decided "
        f"{sum(r['dec'] != 'unknown' for r in rows)}/{n} claims at 1.1x true max within "
        f"{args.timeout:.0f} s (max {max(r['dec_s'] for r in rows):.2f} s); bound ratio after "
        f"refinement max {max(r['bnb_ratio'] for r in rows):.4f}, median "
        f"{statistics.median(r['bnb_ratio'] for r in rows):.4f}; fast-tier ratio median "
        f"{statistics.median(fr):.3f}, p90 {fr[int(0.9 * (len(fr) - 1))]:.3f}, max {fr[-1]:.3f}"
    )
    return rows


def bench_enforcement(ckpt, spec_path, args) -> None:
    trained, cfg, family = load_checkpoint(ckpt)
    spec = load_spec(spec_path)
    g = torch.Generator().manual_seed(derive_seed(args.seed, "test", "bench_enforce"))
    batch = family.sample(
        args.enforce_tasks, shots=cfg.task.shots, query=cfg.task.query, generator=g, split="test"
    )
    inner_lr = cfg.algo.inner_lr * args.lr_scale
    print(
        f"\n## enforcement: {ckpt}, spec {spec_path}, {args.enforce_tasks} tasks, inner lr "
        f"{inner_lr:g}, {args.steps} steps (every={args.every})"
    )
    print(
        f"{'mode':>8} {'mse mean':>10} {'mse median':>10} {'certified':>10} {'rolled back':>11} "
        f"{'projected':>9} "
        f"{'enforce s/task':>14} {'total s':>8}"
    )
    meta = {k: v.detach() for k, v in trained.graph.named_parameters()}
    for mode in track(
        ("off", "check", "reject", "project"), desc="bench_verify: enforce", unit="mode"
    ):
        enforce = {"mode": mode, "spec": str(spec_path), "every": args.every}
        learner = build_learner(
            OmegaConf.merge(
                cfg,
                {"algo": {"inner_lr": inner_lr}},
                {"enforce": {**enforce, "max_halvings": args.max_halvings}},
            ),
            family,
        )
        learner.load_state_dict(trained.state_dict())
        t0 = time.perf_counter()
        with torch.no_grad():
            fast, frozen = learner.adapt(
                batch.support_x, batch.support_y, steps=args.steps, first_order=True
            )
            mse = learner.query_loss(fast, frozen, batch.query_x, batch.query_y, metric=True)
        total = time.perf_counter() - t0
        ok = 0
        for t in range(batch.num_tasks):
            adapted = {**meta, **{k: v[t].detach() for k, v in fast.items()}}
            if not all(bool(torch.isfinite(v).all()) for v in adapted.values()):
                continue
            with contextlib.suppress(NonFiniteError):
                rep = certify(
                    pair_from_params(learner.graph, meta, adapted),
                    spec,
                    module_params=module_params(learner.graph, meta, adapted),
                )
                ok += rep.status == "proved"
        s = learner.enforcer.stats if learner.enforcer is not None else EnforcementStats()
        say(
            f"{mode:>8} {float(mse.mean()):>10.4g} {float(mse.median()):>10.4g} "
            f"{ok:>6}/{batch.num_tasks:<3} "
            f"{s.rolled_back:>11} {s.projected:>9} {s.seconds / batch.num_tasks:>14.4f} "
            f"{total:>8.2f}"
        )


def _digits_copy(path: str, out: str) -> str:
    """The resolved glyph config on ``task.family: digits`` at 8x8 (no fonts on this machine)."""
    from metacompose.config import load_config

    cfg = load_config(path)
    cfg.task.family = "digits"
    ways = min(10, int(cfg.task.args.get("ways", 5)))  # digits has 10 classes
    cfg.task.args = {"ways": ways, "size": 8}
    cfg.model.args.n_way = ways
    cfg.model.args.image_size = 8
    cfg.report.ood_family = None
    new = f"{out}/{path.split('/')[-1]}"
    OmegaConf.save(cfg, new)
    return new


TINY = [
    "trainer.max_steps=3",
    "trainer.val_check_interval=3",
    "trainer.checkpoint_every_n_steps=3",
    "trainer.enable_progress_bar=false",
    "data.val_tasks=4",
    "data.meta_batch_size=2",
]
CONV_TINY = ["model.args.depth=2", "model.args.filters=4"]


def _needs_cluster(path: str) -> bool:
    """Whether the config asks for hardware a CPU box does not have (several nodes, GPUs)."""
    from metacompose.config import load_config

    t = load_config(path).trainer
    return t.num_nodes > 1 or t.accelerator in ("gpu", "cuda")


def bench_coverage(args) -> None:
    """Train every configs/*.yaml briefly and verify its checkpoint against the spec it names."""
    import glob
    import tempfile
    from collections import Counter

    from metacompose.cli.main import main as cli

    rows = []
    out = tempfile.mkdtemp(prefix="bench_verify_cov_")
    for path in sorted(glob.glob(args.coverage_glob)):
        name = path.split("/")[-1][: -len(".yaml")]
        extra = list(TINY)
        if "glyphs" in name:
            path = _digits_copy(path, out)
        if "glyphs" in name or "digits" in name:
            extra += CONV_TINY
        if _needs_cluster(path):  # a multi-node / GPU config: its model, on one CPU process
            extra += ["trainer.num_nodes=1", "trainer.devices=1", "trainer.accelerator=cpu",
                      "trainer.strategy=auto"]  # fmt: skip
            name += " (1 CPU process)"
        t0 = time.perf_counter()
        run = name.split(" ")[0]
        with contextlib.redirect_stdout(None):
            code = cli(["train", path, *extra, f"out_dir={out}", f"name={run}"])
        if code != 0:
            rows.append((name, "train failed", code, Counter(), 0.0))
            continue
        ckpt = f"{out}/{run}/checkpoints/last.ckpt"
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            vcode = cli(
                ["verify", ckpt, "--tasks", "2", "--tier", "fast", "--json", f"{ckpt}.json"]
            )
        counts = Counter()
        try:
            import json

            with open(f"{ckpt}.json") as f:
                rep = json.load(f)
            for t in rep["tasks"]:
                for c in t["claims"]:
                    counts[c["status"]] += 1
        except (OSError, ValueError):
            pass
        rows.append((name, "ok", vcode, counts, time.perf_counter() - t0))
    say(f"{'config':48} {'exit':>4} {'proved':>6} {'viol.':>6} {'unkn.':>6} {'s':>6}")
    for name, what, code, c, sec in rows:
        tag = name + (" (digits)" if "glyphs" in name else "")
        if what != "ok":
            say(f"{tag:48} {what} (exit {code})")
            continue
        say(f"{tag:48} {code:>4} {c['proved']:>6} {c['violated']:>6} {c['unknown']:>6} {sec:>6.1f}")
    bad = [r[0] for r in rows if r[1] != "ok" or r[2] == 2]
    say(
        f"coverage: {len(rows) - len(bad)}/{len(rows)} configs verify with exit 0/1/3; exit 2 or "
        f"no checkpoint: {bad}"
    )


def bench_soundness(args) -> None:
    """Self-test counts over ReLU / tanh / sin MLPs and tiny conv nets."""
    from metacompose.symbolic import self_test

    s = self_test(n_networks=args.soundness_networks, n_conv=args.soundness_conv, seed=args.seed)
    say("soundness: " + " | ".join(s.lines()))


def bench_smooth(args) -> None:
    """Tanh / sin stand-in pairs: refine bound over the best attack value, claims 10% above it.

    Stand-in pairs (:func:`metacompose.symbolic.self_test.random_pair`: 1-40-40-1 nets with a
    perturbed twin, plain and residual; ``--smooth-dims`` inputs) on ``[-2, 2]^n``; per pair
    two claims (:func:`smooth_claims`).
    """
    from metacompose.symbolic.self_test import random_pair

    for n, act in ((n, a) for n in args.smooth_dims for a in ("tanh", "sin")):
        g = torch.Generator().manual_seed(
            derive_seed(args.seed, "smooth", act, *([n] if n > 1 else []))
        )
        rows = []
        for i in range(args.smooth_pairs):
            pair = random_pair(
                g, input_dim=n, width=40, residual=i % 4 >= 2, scale=0.1, activation=act
            )
            dom = BoxDomain(lower=(-2.0,) * n, upper=(2.0,) * n)
            rows += smooth_claims(pair, dom, args, g)
        say(smooth_summary(f"smooth {n}-D {act}", rows, args.timeout))


def bench_smooth_checkpoint(ckpt: str, args) -> None:
    """The same claims on per-task adaptations of a trained checkpoint (routed exports with
    FiLM / low-rank modulation folded in), over the domain of the spec its config names."""
    learner, cfg, family = load_checkpoint(ckpt)
    spec = load_spec(cfg.verify.spec)
    g = torch.Generator().manual_seed(derive_seed(args.seed, "test", "bench_smooth"))
    batch = family.sample(
        args.tasks, shots=cfg.task.shots, query=cfg.task.query, generator=g, split="test"
    )
    rows = []
    for a in adapt_tasks(learner, batch):
        pair = pair_from_params(a.graph, a.meta, a.adapted)
        rows += smooth_claims(pair, spec.domain, args, g)
    net = pair.meta
    kinds = sorted({nd.op.kind for nd in net.nodes.values() if isinstance(nd.op, Activation)})
    n_aff = len(net.affine_nodes())
    source = "routed export" if a.choice else "graph"
    say(smooth_summary(
        f"checkpoint {ckpt} ({source}: {n_aff} affine nodes, {'/'.join(kinds)}; {args.tasks} tasks)",
        rows, args.timeout,
    ))  # fmt: skip


def smooth_claims(pair, dom: BoxDomain, args, g: torch.Generator) -> list[tuple]:
    """Deviation and output-upper claims on output 0 over ``dom``: (bound / attack, status, wall
    s, CPU s).

    The attack value is the best of an independent attack (dense grid + gradient ascent) and
    branch and bound's own best point; the bound is branch and bound's (rel. gap 1%,
    ``--timeout``); the claim ``objective <= 1.1 x attack`` goes to ``certify(tier="refine")``
    with the same budget. A claim whose attack value is not positive is skipped.
    """
    from metacompose.symbolic.self_test import attack_max

    xlo = torch.tensor([dom.lower], dtype=torch.float64)
    xhi = torch.tensor([dom.upper], dtype=torch.float64)
    rows = []
    for kind in ("deviation", "output_upper"):
        obj = Objective(kind, 0)
        res = branch_and_bound(
            pair, obj, xlo, xhi, rel_gap=0.01, time_budget_s=args.timeout, generator=g
        )
        best = max(attack_max(pair, obj, xlo, xhi, g), res.best_value)
        if best <= 0:  # a ratio needs a positive reference
            continue
        limit = 1.1 * best
        spec = (
            StabilitySpec(domain=dom, deviation=DeviationBound(max_abs=(limit,)))
            if kind == "deviation"
            else StabilitySpec(domain=dom, output_range=OutputRange(lower=(-1e9,), upper=(limit,)))
        )
        t0, c0 = time.perf_counter(), time.process_time()
        (r,) = certify(pair, spec, tier="refine", timeout_s=args.timeout).results
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rows.append((res.upper / best, r.status, wall, cpu))
    return rows


def smooth_summary(label: str, rows: list[tuple], timeout: float) -> str:
    n = len(rows)
    ratios = sorted(r[0] for r in rows)
    proved = sum(r[1] == "proved" and r[2] <= timeout for r in rows)
    tight = sum(r[0] <= 1.05 for r in rows)
    return (
        f"{label}: {n} claims; refine bound / best attack median "
        f"{statistics.median(ratios):.4f}, p90 {ratios[int(0.9 * (n - 1))]:.4f}, max "
        f"{ratios[-1]:.4f}; <= 1.05 for {tight}/{n}; claims at 1.1x attack proved "
        f"within {timeout:.0f} s: {proved}/{n} ({proved / n:.1%}); "
        f"violated {sum(r[1] == 'violated' for r in rows)}; max {max(r[2] for r in rows):.2f} s "
        f"(CPU {max(r[3] for r in rows):.2f} s, median {statistics.median(r[3] for r in rows):.2f})"
    )


def bench_classifier(args) -> None:
    """Prediction stability of a conv 5-way classifier at rho = 0.001 and 0.01."""
    from metacompose.symbolic import spec_from_dict
    from metacompose.verify.report import verify_learner

    learner, cfg, family = load_checkpoint(args.classifier)
    for rho in (0.001, 0.01):
        spec = spec_from_dict(
            {"domain": {"linf_ball": {"radius": rho}}, "prediction": {"agree_with_meta": True}},
            source=f"rho={rho}",
        )
        rep = verify_learner(
            learner,
            family,
            spec,
            n_tasks=args.tasks,
            shots=cfg.task.shots,
            query=args.classifier_query or cfg.task.query,
            steps=cfg.algo.eval_inner_steps,
            tier="fast",
            timeout_s=args.timeout,
            seed=args.seed,
        )
        stable = [r for t in rep.reports for r in t.results if r.claim.startswith("prediction_s")]
        n = max(1, len(stable))
        dec = sum(r.status in ("proved", "violated") for r in stable)
        pr = sum(r.status == "proved" for r in stable)
        say(
            f"classifier rho={rho}: stability decided {dec}/{len(stable)} images "
            f"({pr} proved, {dec - pr} violated); {rep.seconds / n:.3f} s per image"
        )


def main() -> None:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--sinusoid", type=checkpoint, help="sinusoid checkpoint")
    p.add_argument("--sinusoid-spec", default="configs/bounds/sinusoid.yaml")
    p.add_argument(
        "--compositional", type=checkpoint, help="compositional checkpoint (routed or monolithic)"
    )
    p.add_argument(
        "--fallback",
        type=checkpoint,
        help="monolithic baseline checkpoint if the routed one won't convert",
    )
    p.add_argument("--compositional-spec", default="configs/bounds/compositional.yaml")
    p.add_argument("--tasks", type=non_negative_int, default=10)
    p.add_argument(
        "--repeats", type=positive_int, default=5, help="fast-tier timing repeats (median)"
    )
    p.add_argument("--timeout", type=seconds, default=5.0)
    p.add_argument("--exact-tasks", type=non_negative_int, default=1)
    p.add_argument("--exact-timeout", type=seconds, default=20.0)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--enforce", action="store_true", help="also run part 2 on --sinusoid")
    p.add_argument("--enforce-tasks", type=positive_int, default=25)
    p.add_argument("--lr-scale", type=positive_float, default=10.0)
    p.add_argument("--steps", type=positive_int, default=20)
    p.add_argument("--max-halvings", type=non_negative_int, default=8)
    p.add_argument("--every", choices=("end", "step"), default="end")
    p.add_argument("--coverage", action="store_true", help="train+verify every config briefly")
    p.add_argument("--coverage-glob", default="configs/*.yaml")
    p.add_argument("--soundness", action="store_true", help="self-test counts (>= 1,000 claims)")
    p.add_argument("--soundness-networks", type=non_negative_int, default=48)
    p.add_argument("--soundness-conv", type=non_negative_int, default=12)
    p.add_argument("--smooth", action="store_true", help="tanh / sin refine tightness")
    p.add_argument(
        "--smooth-pairs", type=positive_int, default=20, help="pairs per activation (2 claims)"
    )
    p.add_argument(
        "--smooth-dims",
        type=positive_int,
        nargs="+",
        default=[1, 2],
        help="input dims of the stand-ins",
    )
    p.add_argument(
        "--smooth-checkpoint",
        type=checkpoint,
        action="append",
        default=[],
        help="trained smooth-activation checkpoint (repeatable): the --smooth claims on its "
        "per-task adaptations (--tasks of them)",
    )
    p.add_argument(
        "--classifier", type=checkpoint, help="conv classifier checkpoint (prediction stability)"
    )
    p.add_argument(
        "--classifier-query",
        type=non_negative_int,
        default=0,
        help="query images per class (0: the config's)",
    )
    args = p.parse_args()
    torch.set_num_threads(1)  # tiny matrices: extra threads only contend on a shared machine
    if args.sinusoid and args.tasks > 0:
        bench_adaptations("sinusoid", args.sinusoid, args.sinusoid_spec, args)
    if args.compositional and args.tasks > 0:
        bench_adaptations(
            "compositional",
            args.compositional,
            args.compositional_spec,
            args,
            fallback=args.fallback,
        )
    if args.enforce and args.sinusoid:
        bench_enforcement(args.sinusoid, args.sinusoid_spec, args)
    if args.smooth:
        bench_smooth(args)
    for ckpt in args.smooth_checkpoint:
        bench_smooth_checkpoint(ckpt, args)
    if args.classifier:
        bench_classifier(args)
    if args.soundness:
        bench_soundness(args)
    if args.coverage:
        bench_coverage(args)


if __name__ == "__main__":
    run_script(main)
