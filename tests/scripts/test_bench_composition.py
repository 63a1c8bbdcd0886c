"""``scripts/bench_composition.py``: the compositional family's error floor (``--oracle``) and the
per-pair labels (``--per-pair``)."""

import math
from pathlib import Path
from types import SimpleNamespace

import torch
from script_loader import load_script

from metacompose.tasks import CompositionalFamily
from metacompose.tasks.compositional import INNER, OUTER, PRESETS

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_composition.py"


def test_oracle_recovers_tasks_from_ten_shots_and_a_wrong_form_does_not():
    """With the true (f, g) and their formulas, 10 shots pin a task down (query MSE ~ 0); the same
    search with a wrong outer primitive is far off, so the check can fail."""
    bench = load_script("bench_composition")
    fam = CompositionalFamily(preset="identifiable")
    mse = bench.oracle_mse(fam, n_tasks=12, combos="held_out", shots=10, seed=0)
    assert mse.shape == (12,) and float(mse.max()) < 1e-2
    # the same tasks (fam.sample), searched with the wrong outer formula for every task
    wrong = SimpleNamespace(sample=fam.sample, inner=fam.inner, outer=fam.outer[::-1],
                            param_range=fam.param_range, amplitude=fam.amplitude)  # fmt: skip
    bad = bench.oracle_mse(wrong, n_tasks=12, combos="held_out", shots=10, seed=0)
    assert float(bad.mean()) > 10 * float(mse.mean()) + 1e-2
    # independent float64 check of one task: the true parameters reproduce the query exactly
    g = torch.Generator().manual_seed(0)
    b = fam.sample(1, shots=10, query=10, generator=g, split="test", subset="held_out")
    f, o = INNER[fam.inner[int(b.info["f"][0])]], OUTER[fam.outer[int(b.info["g"][0])]]
    p = b.info["param"].double().view(1, 1)
    pred = float(b.info["amplitude"][0]) * o(f(b.query_x[0].double(), p))
    assert math.isclose(float(((pred - b.query_y[0].double()) ** 2).mean()), 0.0, abs_tol=1e-10)


class PredictZero:
    """A stand-in learner whose query MSE is the mean square of the target, task by task."""

    def evaluate(self, batch):
        return batch.query_y.pow(2).mean(dim=(1, 2))[None]


def test_pairs_label_each_task_and_the_table_averages_them():
    bench = load_script("bench_composition")
    fam = CompositionalFamily(preset="identifiable")
    mse, pairs = bench.split_mse_pairs(
        PredictZero(), fam, n_tasks=150, combos="held_out", shots=10, seed=3
    )
    assert len(pairs) == 150 and set(pairs) == {f"{f}∘{g}" for f, g in PRESETS["identifiable"][2]}
    # the same tasks again: recompute each target from its labelled pair's formula
    batches = bench.meta_test_batches(fam, n_tasks=150, combos="held_out", shots=10, seed=3)
    b = next(batches)
    for t in range(20):
        f, g = pairs[t].split("∘")
        x, p, a = b.query_x[t], b.info["param"][t], b.info["amplitude"][t]
        y = a * OUTER[g](INNER[f](x.double(), p.double()))
        torch.testing.assert_close(mse[t], y.pow(2).mean(), rtol=1e-5, atol=1e-6)
    table = bench.pair_table({"zero": {"a∘b": [1.0, 3.0]}, "other": {"a∘b": [0.5], "c∘d": [2.0]}})
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:]}
    assert rows == {"a∘b": ["2.0000", "0.5000"], "c∘d": ["-", "2.0000"]}


def test_oracle_and_labels_for_the_sum_structure_and_parametric_outer_primitives():
    """The oracle searches both parameters (and solves both amplitudes of a sum); per-pair labels
    use the structure's sign."""
    bench = load_script("bench_composition")
    sums = CompositionalFamily(
        structure="sum", inner=["ramp", "step", "vee", "saw"], outer=["sine", "bump", "sinc"],
        held_out=[["ramp", "sine"], ["step", "bump"]], check={"min_distinct": 0.0},
    )  # fmt: skip
    mse = bench.oracle_mse(sums, n_tasks=6, combos="held_out", shots=10, seed=0)
    assert float(mse.max()) < 2e-2
    _, pairs = bench.split_mse_pairs(
        PredictZero(), sums, n_tasks=20, combos="held_out", shots=10, seed=0
    )
    assert set(pairs) == {"ramp+sine", "step+bump"}
    wide = CompositionalFamily(inner=["sine", "step"], outer=["sin_freq", "gauss"], held_out=[])
    assert float(bench.oracle_mse(wide, n_tasks=6, combos="seen", shots=10, seed=0).max()) < 2e-2
    purity = {"joint_nmi": 0.5, "slots": {"inner": {"nmi": 0.2, "accuracy": 0.6},
                                          "outer": {"nmi": 0.4, "accuracy": 0.8}}}  # fmt: skip
    assert bench.mean_accuracy(purity) == 0.7
    assert bench.purity_line(purity).startswith("joint NMI 0.500; inner NMI 0.200 acc 0.600")


def test_oracle_routed_from_data_finds_the_true_pair_when_shots_pin_it_down():
    """Support search over every (f, g) with the true formulas: at 10 shots it picks each task's
    true pair (so its query MSE is the true-structure oracle's); at 1 shot every pair fits the
    single point and routing falls to chance, so the measurement can fail."""
    bench = load_script("bench_composition")
    fam = CompositionalFamily(preset="identifiable")
    mse, purity = bench.oracle_routing(fam, n_tasks=12, combos="held_out", shots=10, seed=0)
    assert purity["joint_nmi"] == 1.0
    assert all(s["accuracy"] == 1.0 for s in purity["slots"].values())
    truth = bench.oracle_mse(fam, n_tasks=12, combos="held_out", shots=10, seed=0)
    torch.testing.assert_close(mse, truth, rtol=0, atol=1e-12)
    _, blind = bench.oracle_routing(fam, n_tasks=24, combos="seen", shots=1, seed=0)
    assert blind["joint_nmi"] < 0.7


def test_the_oracles_fits_are_nested_and_only_the_offset_fit_absorbs_a_constant():
    """``--oracle-fit``: clamped amplitudes, free ones, free ones and an offset are nested models,
    so each fits the support points at most as badly as the one before (same grid); a task lifted
    by a constant is fitted exactly by the offset fit alone, with the true primitives' formulas."""
    bench = load_script("bench_composition")
    fam = CompositionalFamily(structure="sum", inner=["ramp", "step", "vee", "saw"],
                              outer=["sine", "bump", "sinc", "chirp"], held_out=[])  # fmt: skip
    batch = fam.sample(6, shots=10, query=10, generator=torch.Generator().manual_seed(1))
    for t in range(6):
        f, g = (
            INNER[fam.inner[int(batch.info["f"][t])]],
            INNER[fam.outer[int(batch.info["g"][t])]],
        )
        sx, sy, qx = batch.support_x[t], batch.support_y[t], batch.query_x[t]
        losses = [
            float(bench.oracle_fit(fam, f, g, sx, sy, qx, fit)[0]) for fit in bench.ORACLE_FITS
        ]
        assert losses[0] + 1e-9 >= losses[1] >= losses[2] - 1e-9
        lifted = [bench.oracle_fit(fam, f, g, sx, sy + 0.8, qx, fit) for fit in ("free", "offset")]
        assert float(lifted[0][0]) > 1e-3 and float(lifted[1][0]) < 1e-3
        p, q = batch.info["param"][t], batch.info["param_g"][t]
        query = batch.info["amplitude"][t] * f(qx, p) + batch.info["amplitude_g"][t] * g(qx, q)
        torch.testing.assert_close(query, batch.query_y[t])  # the family's own formula
        query = query + 0.8
        assert float(((lifted[1][1] - query) ** 2).mean()) < 0.05  # the grid's resolution


def test_the_oracles_fits_on_the_chain_are_nested_too():
    """The chain's one amplitude: clamped, free, free with an offset; each fits at most as badly as
    the one before (the free fit once crashed on a one-term structure)."""
    bench = load_script("bench_composition")
    fam = CompositionalFamily(preset="identifiable")
    batch = fam.sample(4, shots=10, query=5, generator=torch.Generator().manual_seed(2))
    for t in range(4):
        f, o = INNER[fam.inner[int(batch.info["f"][t])]], OUTER[fam.outer[int(batch.info["g"][t])]]
        sx, sy, qx = (
            batch.support_x[t],
            -batch.support_y[t],
            batch.query_x[t],
        )  # a negative amplitude
        losses = [
            float(bench.oracle_fit(fam, f, o, sx, sy, qx, fit)[0]) for fit in bench.ORACLE_FITS
        ]
        assert losses[0] > 0.1 and losses[1] < 1e-3 and losses[2] <= losses[1] + 1e-9  # grid: p


def test_sum_em_split_scores_the_choice_it_routes():
    """``--sum-em``: one split's mean query MSE and routing purity are those of the learner's own
    choices (support MSE), recomputed here task by task."""
    from metacompose.router.metrics import routing_purity
    from metacompose.router.sum_em import build_sum_em

    bench = load_script("bench_composition")
    family = CompositionalFamily(
        structure="sum", inner=["ramp", "step"], outer=["sine", "bump"],
        held_out=[["ramp", "bump"]], check={"min_distinct": 0.0},
    )  # fmt: skip
    learner = build_sum_em(candidates=2, hidden=4, contexts=3, ridge=1.0, routing="em", seed=0)
    mse, purity = bench.sum_em_split(learner, family, "held_out", False, 12, 0)
    (batch,) = bench.meta_test_batches(family, n_tasks=12, combos="held_out", shots=10, seed=0)
    with torch.no_grad():
        query, support, _, _ = learner.pair_losses(batch)
    flat = support.reshape(4, 12).argmin(dim=0)
    want = query.reshape(4, 12)[flat, torch.arange(12)].mean().item()
    assert math.isclose(mse, want, rel_tol=1e-5)
    picked = {"f": (flat // 2).tolist(), "g": (flat % 2).tolist()}
    truth = {k: batch.info[k].tolist() for k in ("f", "g")}
    assert purity == routing_purity(picked, truth, family.factors, {"f": 2, "g": 2})


def test_equal_size_maml_matches_one_annealed_replica_within_ten_percent():
    """``-maml-equal`` trains MAML on the annealed config's own tasks with a network of one
    replica's size (the issue's "equal size, within 10%")."""
    from metacompose.build import build_family, build_learner
    from metacompose.config import load_config

    bench = load_script("bench_composition")
    root = SCRIPT.parents[1]
    for prefix, config in bench.ANNEALED.items():
        annealed = load_config(root / config)
        learner = build_learner(annealed, build_family(annealed.task))
        per_replica = sum(p.numel() for p in learner.parameters()) / len(learner.f_banks)
        variant = f"{prefix}-maml-equal"
        cfg = load_config(root / bench.VARIANTS[variant], bench.variant_overrides(variant))
        maml = build_learner(cfg, build_family(cfg.task))
        assert cfg.algo.name == "maml"
        # trained on as many points per task as the routed learner (the chain and sums: 15 query)
        assert (cfg.task.shots, cfg.task.query) == (annealed.task.shots, annealed.task.query)
        for subset in ("seen", "held_out"):  # the very same meta-test tasks
            kw = {"n_tasks": 20, "combos": subset, "shots": 10, "seed": 3}
            (ours,) = bench.meta_test_batches(build_family(annealed.task), **kw)
            (theirs,) = bench.meta_test_batches(build_family(cfg.task), **kw)
            torch.testing.assert_close(ours.support_y, theirs.support_y, rtol=0, atol=0)
            torch.testing.assert_close(ours.query_x, theirs.query_x, rtol=0, atol=0)
        assert abs(sum(p.numel() for p in maml.parameters()) / per_replica - 1) <= 0.10
        big = load_config(
            root / bench.VARIANTS[f"{prefix}-maml"], bench.variant_overrides(f"{prefix}-maml")
        )
        assert (
            sum(p.numel() for p in build_learner(big, build_family(big.task)).parameters())
            > 5 * per_replica
        )


def test_equal_size_maml_follows_the_routed_config_as_overridden():
    """``--set`` keys of the routed learner (a coarser table here) size ``-maml-equal`` instead of
    reaching MAML (which refuses them); task keys reach both. The width is the nearest to one
    replica among every width, checked by brute force."""
    from metacompose.build import build_family, build_learner
    from metacompose.config import load_config

    bench = load_script("bench_composition")
    root = SCRIPT.parents[1]
    user = ["algo.args.knots=40", "algo.args.replicas=2", "task.query=12"]
    routed = load_config(root / bench.ANNEALED["fdsa3"], user)
    learner = build_learner(routed, build_family(routed.task))
    per_replica = sum(p.numel() for p in learner.parameters()) / 2
    assert per_replica == 2 * 4 * (40 + 2)  # two banks of 4 tables of 40 knots, slope, shift
    extra = bench.run_overrides("fdsa3-maml-equal", user)
    assert not any(o.startswith("algo.") for o in extra) and "task.query=12" in extra
    cfg = load_config(root / bench.VARIANTS["fdsa3-maml-equal"], extra)
    assert cfg.algo.name == "maml" and cfg.task.query == 12
    assert list(cfg.task.args.inner) == list(routed.task.args.inner)
    n_maml = sum(p.numel() for p in build_learner(cfg, build_family(cfg.task)).parameters())
    best = min(range(1, 200), key=lambda h: abs(h * h + 4 * h + 1 - per_replica))
    assert n_maml == best * best + 4 * best + 1
    assert abs(n_maml / per_replica - 1) <= 0.10
    # the routed variant itself takes every key as written; MAML's own keys reach the MAML variants
    assert bench.run_overrides("fdsa3", user) == user
    own = bench.run_overrides("fdsa3-maml", ["algo.inner_lr=0.1", "model.args.hidden=[8,8]"])
    cfg = load_config(root / bench.VARIANTS["fdsa3-maml"], own)
    assert cfg.algo.inner_lr == 0.1 and list(cfg.model.args.hidden) == [8, 8]


def test_restarted_variants_for_the_sum_sets_only():
    """``-restarted`` adds block restarts after training (``restart.order=fgpd``) to the sum sets; the
    chain has no such variant, and ``restart.`` keys never reach the MAML variants (which refuse
    them)."""
    from metacompose.config import load_config

    bench = load_script("bench_composition")
    root = SCRIPT.parents[1]
    for prefix in ("fdsa", "fdsa2", "fdsa3"):
        cfg = load_config(root / bench.VARIANTS[f"{prefix}-restarted"],
                          bench.run_overrides(f"{prefix}-restarted", ["restart.steps=10", "restart.anneal=5"]))  # fmt: skip
        assert cfg.restart.order == "fgpd" and cfg.restart.steps == 10
        assert cfg.algo.name == "annealed_sum" and "routing" not in cfg.algo.args  # from data
    assert not {"fdca-restarted", "fd-restarted", "fds-restarted"} & set(bench.VARIANTS)
    kept = bench.run_overrides(
        "fdsa-maml", ["restart.steps=10", "restart.anneal=5", "task.query=12"]
    )
    assert not any(o.startswith("restart.") for o in kept) and "task.query=12" in kept


def test_one_seed_prints_no_interval_rather_than_nan():
    bench = load_script("bench_composition")
    assert bench.interval([0.5]) == "0.500 ± -" and bench.half(float("nan")) == "-"
    assert bench.num(float("nan")) == "nan"  # a diverged mean stays visible as such
    assert bench.interval([0.5, 0.7]).startswith("0.600 ± ") and "nan" not in bench.interval(
        [0.5, 0.7]
    )
    assert bench.interval([]) == "-" and bench.num(0.1234) == "0.1234"
