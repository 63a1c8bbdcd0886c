"""``scripts/replicas.py``: every replica of an annealed checkpoint, routed and scored on its own."""

import argparse
import math
from pathlib import Path

import pytest
import torch
from annealed_runs import SMALL
from script_loader import load_script, run_script_cli

from metacompose.config import load_config
from metacompose.evaluate import load_checkpoint
from metacompose.training import train

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str):
    return run_script_cli("replicas", *args)


def test_each_replica_gets_a_row_and_the_kept_one_is_marked(tmp_path):
    cfg = load_config(
        ROOT / "configs" / "from_data_sums_annealed.yaml", [*SMALL, f"out_dir={tmp_path}"]
    )
    ckpt = train(cfg).checkpoint
    learner, _, _ = load_checkpoint(ckpt)
    done = run(str(ckpt), "--tasks", "20")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0].rstrip("*") for r in rows] == ["0", "1", "2"]
    assert [r[0].endswith("*") for r in rows] == [i == learner.kept for i in range(3)]
    for r, fit in zip(rows, learner.fit.tolist()):
        assert float(r[1]) == pytest.approx(fit, abs=1e-4)
        assert 0.0 <= float(r[-1]) <= 1.0 and 0.0 <= float(r[-2]) <= 1.0
        assert 0.0 <= float(r[4]) <= 1.0  # usage balance
    assert f"kept {learner.kept}" in done.stdout and "most balanced" in done.stdout
    # routed with sub-grid refinement: the same replicas and fits, their routing re-scored
    refined = run(str(ckpt), "--tasks", "20", "--refine", "2", "--seconds", "--fit-tasks", "10")
    assert refined.returncode == 0, refined.stderr[-2000:]
    fixed = [line for line in refined.stdout.splitlines() if "fixed training tasks" in line]
    assert len(fixed) == 1 and len(fixed[0].split(": ", 1)[1].split(", ")) == 3, refined.stdout
    timing = [line for line in refined.stdout.splitlines() if "ms per held-out task" in line]
    assert len(timing) == 1 and "(refine 2," in timing[0], refined.stdout
    ms = [float(part.rsplit(" ", 1)[1]) for part in timing[0].split(": ", 1)[1].split("; ")]
    assert len(ms) == 2 and all(
        math.isfinite(v) and v > 0 for v in ms
    )  # 2 candidates: no descriptor
    # banks as large as the family's primitive lists: descriptor routing is timed too
    cfg4 = load_config(
        ROOT / "configs" / "from_data_sums_annealed.yaml",
        [*SMALL, "algo.args.candidates=[4,4]", f"out_dir={tmp_path}", "name=four"],
    )
    four = run(str(train(cfg4).checkpoint), "--tasks", "10", "--seconds")
    assert four.returncode == 0, four.stderr[-2000:]
    assert "; by the descriptor, grid only " in four.stdout
    again = [line.split() for line in refined.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [r[1] for r in again] == [r[1] for r in rows]  # the same fits: only routing changed
    assert all(math.isfinite(float(a[5])) for a in again)
    assert run(str(ckpt), "--refine", "-1").returncode == 2


def test_usage_balance_is_the_mean_normalised_entropy_of_each_bank():
    mod = load_script("replicas")
    even = torch.tensor([0, 1, 2, 3] * 5)
    merged = torch.tensor([0] * 10 + [1] * 5 + [2] * 5)  # candidate 3 unused
    sizes = {"f": 4, "g": 4}
    assert mod.balance({"f": even, "g": even}, sizes) == pytest.approx(1.0, abs=1e-12)
    h = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)) / math.log(4)  # by hand: 0.75
    assert mod.balance({"f": even, "g": merged}, sizes) == pytest.approx((1 + h) / 2, abs=1e-12)
    assert mod.balance({"f": torch.zeros(7, dtype=torch.long)}, {"f": 3}) == 0.0
    one = {"f": torch.zeros(5, dtype=torch.long)}
    assert mod.balance(one, {"f": 1}) == 1.0  # a bank of one candidate is trivially even


def test_most_balanced_among_replicas_that_fit_nearly_as_well():
    mod = load_script("replicas")
    fit, used = [0.0146, 0.0182, 0.0388, 0.0337], [0.928, 0.981, 0.999, 0.976]
    assert mod.most_balanced(used, fit) == 2  # balance alone takes a replica that fits badly
    assert mod.most_balanced(used, fit, within=1.5) == 1  # 0.0182 <= 1.5 x 0.0146; 0.0337 is not
    assert mod.most_balanced(used, fit, within=1.0) == 0  # only the lowest fit
    assert mod.most_balanced([0.9, 0.9], [0.02, 0.01]) == 1  # a tie in balance: the lower fit
    assert mod.most_balanced([0.5, 0.9], [float("nan"), 0.01], within=1.5) == 1


def test_a_checkpoint_without_replicas_is_refused_in_one_line(tmp_path):
    cfg = load_config(
        ROOT / "configs" / "sinusoid.yaml",
        [
            "trainer.max_steps=2",
            "data.meta_batch_size=4",
            "data.val_tasks=4",
            f"out_dir={tmp_path}",
        ],
    )
    done = run(str(train(cfg).checkpoint))
    assert done.returncode == 2 and "algo.name is maml, not annealed_sum" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    uniform = [*SMALL, "algo.args.routing=uniform", f"out_dir={tmp_path}", "name=u"]
    cfg = load_config(ROOT / "configs" / "from_data_sums_annealed.yaml", uniform)
    done = run(str(train(cfg).checkpoint))
    assert done.returncode == 2 and "eval_routing=uniform: only a checkpoint routed" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_task_fits_are_each_replicas_exhaustive_best_pair_fit_on_the_same_tasks(tmp_path):
    """``--fit-tasks``: every replica's best-pair MSE on each of the same training tasks, against
    an exhaustive float64 least-squares fit of every pair at every grid context pair (refine 0),
    and their means per primitive over the tasks that hold it; the learner's running fits,
    amplitude limits and mode are left as they were."""
    mod = load_script("replicas")
    over = [*SMALL, "algo.args.refine=0", "algo.args.ridge=1e-9", f"out_dir={tmp_path}"]
    cfg = load_config(ROOT / "configs" / "from_data_sums_annealed.yaml", over)
    learner, cfg, family = load_checkpoint(train(cfg).checkpoint)
    fit, amplitude = learner.fit.clone(), learner.amplitude.clone()
    kw = {"seed": 3, "shots": cfg.task.shots, "query": cfg.task.query}
    tasks, got = mod.task_fits(learner, family, 70, **kw)
    assert got.shape == (70, len(fit))
    assert torch.equal(learner.fit, fit) and torch.equal(learner.amplitude, amplitude)
    assert not learner.training
    g = torch.Generator().manual_seed(mod.derive_seed(3, "replicas", "fixed-fit"))
    again = family.sample(70, shots=kw["shots"], query=kw["query"], generator=g, split="train")
    assert torch.equal(again.support_x, tasks.support_x)
    x = torch.cat([tasks.support_x, tasks.query_x], 1)[..., 0].double()
    y = torch.cat([tasks.support_y, tasks.query_y], 1)[..., 0].double()
    want = torch.empty(len(x), len(fit), dtype=torch.float64)
    for r in range(len(fit)):
        with torch.no_grad():
            grid = learner.f_banks[r].grid(torch.float32)
            hf = learner.f_banks[r].on_grid(x.float(), grid).double().flatten(0, 1)  # (C G, T, N)
            hg = learner.g_banks[r].on_grid(x.float(), grid).double().flatten(0, 1)
        best = torch.full((len(x),), math.inf, dtype=torch.float64)
        for i in range(len(hf)):
            for j in range(len(hg)):
                ones = [torch.ones_like(y)] if learner.offset else []  # the config's fit
                a = torch.stack([hf[i], hg[j], *ones], -1)  # (T, N, 2 or 3)
                coef = torch.linalg.lstsq(a, y[..., None]).solution
                mse = ((a @ coef)[..., 0] - y).pow(2).mean(1)
                best = torch.minimum(best, mse)
        want[:, r] = best
    assert torch.allclose(got, want, rtol=5e-3, atol=1e-6)
    per = mod.by_primitive(family, tasks, got)
    for factor, names in family.factors.items():
        for k, name in enumerate(names):
            held = tasks.info[factor] == k
            if held.any():  # by hand: the tasks whose true pair holds this primitive
                mean = [sum(float(want[t, r]) for t in range(70) if held[t]) / int(held.sum())
                        for r in range(len(fit))]  # fmt: skip
                assert per[f"{factor}:{name}"].tolist() == pytest.approx(mean, rel=5e-3)
            else:
                assert f"{factor}:{name}" not in per
    assert len(per) == sum(len(set(tasks.info[f].tolist())) for f in family.factors)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kept_expectation_is_the_mean_over_every_draw_of_the_design(seed):
    """The exact expectation against brute force: every way to draw P plain and B balanced
    replicas from the pool, each keeping its lowest fit (ties: the lower index), averaged."""
    import itertools

    mod = load_script("replicas")
    g = torch.Generator().manual_seed(seed)
    n = 9
    fit = torch.randint(0, 5, (n,), generator=g).tolist()  # small integers: many ties
    score = torch.rand(n, generator=g, dtype=torch.float64).tolist()
    balanced = [bool(b) for b in torch.randint(0, 2, (n,), generator=g).tolist()]
    balanced[0], balanced[1] = False, True
    plain_ids = [i for i in range(n) if not balanced[i]]
    bal_ids = [i for i in range(n) if balanced[i]]
    for p in range(len(plain_ids) + 1):
        for b in range(len(bal_ids) + 1):
            if p + b == 0:
                continue
            draws = [
                min(a + c, key=lambda i: (fit[i], i))
                for a in itertools.combinations(plain_ids, p)
                for c in itertools.combinations(bal_ids, b)
            ]
            want = sum(score[i] for i in draws) / len(draws)
            got = mod.kept_expectation(fit, score, balanced, plain=p, bal=b)
            assert got == pytest.approx(want, rel=1e-12, abs=1e-15)
    with pytest.raises(ValueError, match="needs more replicas"):
        mod.kept_expectation(fit, score, balanced, plain=len(plain_ids) + 1, bal=0)
    assert mod.design("8+8") == (8, 8) and mod.design("16+0") == (16, 0)
    for bad in ("8", "8+", "a+1", "0+0", "1+2+3"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not P\\+B"):
            mod.design(bad)


def test_pool_merges_the_distinct_replicas_of_runs_of_one_seed(tmp_path):
    """``--pool``: a plain 3-replica run and a run of the same seed with its last 2 replicas
    balanced share replica 0 (same start, same batches): a pool of 3 plain and 2 balanced, and
    each design's line is the exact expectation over the printed rows; a run of another seed is
    refused in one line."""
    mod = load_script("replicas")
    cfgs = {
        "plain": [],
        "mixed": ["algo.args.balance_steps=4", "algo.args.balanced_replicas=2"],
        "other": ["seed=5"],
    }
    ckpt = {}
    for name, extra in cfgs.items():
        over = [*SMALL, *extra, f"out_dir={tmp_path}", f"name={name}"]
        ckpt[name] = str(
            train(load_config(ROOT / "configs" / "from_data_sums_annealed.yaml", over)).checkpoint
        )
    done = run(
        ckpt["plain"], ckpt["mixed"], "--tasks", "20", "--pool", "1+0", "3+0", "1+2", "0+2", "4+0"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [
        line.split()
        for line in done.stdout.splitlines()
        if line.strip()[:1].isdigit() and "plain" not in line
    ]
    assert len(rows) == 6
    assert rows[0][1:] == rows[3][1:]  # replica 0: plain in both runs, the same
    pool = {tuple(r[1:]): i >= 4 for i, r in enumerate(rows)}  # balanced: mixed's 1, 2
    assert len(pool) == 5 and sum(pool.values()) == 2
    assert "pool: 3 plain and 2 balanced distinct replicas" in done.stdout
    fit = [float(k[0]) for k in pool]
    both = [float(k[-1]) for k in pool]
    lines = {
        tuple(int(x) for x in line.split()[0:4:3]): line
        for line in done.stdout.splitlines() if " balanced: " in line and "plain +" in line
    }  # fmt: skip
    for p, b in ((1, 0), (3, 0), (1, 2), (0, 2)):
        want = mod.kept_expectation(fit, both, list(pool.values()), plain=p, bal=b)
        got = float(lines[(p, b)].split(": ")[1].split(" / ")[0])
        assert got == pytest.approx(want, abs=6e-4)
    assert "the pool is too small" in lines[(4, 0)]
    refused = run(ckpt["plain"], ckpt["other"], "--tasks", "5", "--pool", "1+0")
    assert refused.returncode == 2 and "--pool needs runs of one config and seed" in refused.stderr
    assert "this one differs from the first in seed (5 vs 0) (" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    bad = run(ckpt["plain"], "--pool", "8")
    assert bad.returncode == 2 and "'8' is not P+B" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_pool_differences_name_every_key_beyond_replicas_and_display():
    """Runs differing in their replicas, names or progress bar pool; any other key (nested or
    only in one config) is named with both values, sorted."""
    mod = load_script("replicas")
    base = load_config(ROOT / "configs" / "from_data_sums_annealed.yaml", SMALL)
    same = load_config(
        ROOT / "configs" / "from_data_sums_annealed.yaml",
        [*SMALL, "algo.args.replicas=16", "algo.args.balance_steps=4", "name=x", "out_dir=/tmp/y",
         "trainer.enable_progress_bar=true", "trainer.logger=none", "verify.spec=null",
         "algo.args.balanced_replicas=2", "report.shots=[5]"],
    )  # fmt: skip
    assert mod.pool_differences(base, same) == []
    other = load_config(
        ROOT / "configs" / "from_data_sums_annealed.yaml",
        [*SMALL, "seed=3", "algo.args.knots=32", "trainer.cpu_threads=2"],
    )
    assert mod.pool_differences(base, other) == [
        "algo.args.knots (32 vs 16)", "seed (3 vs 0)",
        f"trainer.cpu_threads (2 vs {base.trainer.cpu_threads})",
    ]  # fmt: skip
    extra = base.copy()
    extra.algo.args.new_key = 1
    assert mod.pool_differences(base, extra) == ["algo.args.new_key (1 vs unset)"]
    extra.algo.args.new_key = {}  # an empty section is a value, not nothing
    assert mod.pool_differences(base, extra) == ["algo.args.new_key ({} vs unset)"]
    extra.algo.args.new_key = "unset"
    assert mod.pool_differences(base, extra) == ['algo.args.new_key ("unset" vs unset)']
    extra.algo.args.new_key = 1.0  # 1 and 1.0 (free-form arguments) as written
    first = base.copy()
    first.algo.args.new_key = 1
    assert mod.pool_differences(first, extra) == ["algo.args.new_key (1.0 vs 1)"]


def test_the_chain_is_scored_per_slot(tmp_path):
    """The chain's slots are not interchangeable: each replica's "both" is the fraction of
    held-out tasks right in both slots (``all_matched``), from the learner's own routing."""
    cfg = load_config(
        ROOT / "configs" / "from_data_chain_annealed.yaml",
        [*SMALL, "algo.args.contexts=3", "algo.args.eval_contexts=5", f"out_dir={tmp_path}"],
    )
    ckpt = train(cfg).checkpoint
    done = run(str(ckpt), "--tasks", "12")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == cfg.algo.args.replicas
    assert all(0.0 <= float(r[-1]) <= 1.0 for r in rows)
