"""``scripts/bank_coverage.py``: every true primitive against every candidate of a trained
data-routed sum learner, the matching, the gaps, the label-free overlap and the heat maps."""

from pathlib import Path

import pytest
import torch
from annealed_runs import SMALL
from script_loader import run_script

from metacompose.config import load_config
from metacompose.evaluate import load_checkpoint
from metacompose.router.bank_coverage import match, primitive_coverage
from metacompose.router.bank_overlap import POINTS
from metacompose.training import train

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str):
    return run_script("bank_coverage", *args)


def trained(tmp_path, config: str, *extra: str) -> Path:
    cfg = load_config(ROOT / "configs" / config, [*SMALL, f"out_dir={tmp_path}", *extra])
    return train(cfg).checkpoint


def test_the_table_marks_the_matched_candidate_and_says_the_overlap(tmp_path):
    ckpt = trained(tmp_path, "from_data_sums_annealed.yaml", "algo.args.candidates=[4,4]")
    png = tmp_path / "coverage.png"
    done = run(str(ckpt), "--params", "3", "--png", str(png))
    assert done.returncode == 0, done.stderr[-2000:]
    learner, _, family = load_checkpoint(ckpt)
    x = torch.linspace(*family.x_range, POINTS, dtype=torch.float64)
    lines = done.stdout.splitlines()
    registries = family.structure.registries
    for slot, names, bank, reg in (
        ("f-bank", family.inner, learner.f_banks[learner.kept], registries[0]),
        ("g-bank", family.outer, learner.g_banks[learner.kept], registries[1]),
    ):
        covs = [primitive_coverage(bank, reg[n], n, x=x,
                                   grid=learner.eval_grid, params=3, offset=learner.offset)
                for n in names]  # fmt: skip
        matched = match(covs)
        assert sorted(matched.values()) == [0, 1, 2, 3]  # four primitives, four candidates
        start = lines.index(f"{slot}: lowest residual @ its context, per candidate (* matched)")
        rows = lines[start + 2 : start + 2 + 3 * len(names)]
        for cov, chunk in zip(covs, [rows[i : i + 3] for i in range(0, len(rows), 3)], strict=True):
            for i, row in enumerate(chunk):
                assert row.split()[0] == cov.name and row.count("*") == 1
                cells = row.split("p=")[1].split()[1:]  # value, @context, per candidate
                k = matched[cov.name]
                assert cells[2 * k].lstrip("*") == f"{cov.residual[k][i]:.4f}"
                assert cells[2 * k].startswith("*")
        assert any(line.strip().startswith(f"{slot}: ") and "reproduce" in line for line in lines)
    assert png.exists() and png.stat().st_size > 1000
    assert f"wrote {png}" in done.stdout


@pytest.mark.parametrize("config", ["sinusoid.yaml", "from_data_chain_annealed.yaml"])
def test_other_learners_are_refused_in_one_line(tmp_path, config):
    extra = ["algo.args.contexts=3"] if "chain" in config else []
    if config == "sinusoid.yaml":
        cfg = load_config(ROOT / "configs" / config,
                          ["trainer.max_steps=2", "trainer.val_check_interval=2", "data.val_tasks=2",
                           "trainer.enable_progress_bar=false", f"out_dir={tmp_path}"])  # fmt: skip
        ckpt = train(cfg).checkpoint
    else:
        ckpt = trained(tmp_path, config, *extra)
    done = run(str(ckpt))
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert (
        line.startswith("bank_coverage.py: error: ") and "the sum structure of annealed_sum" in line
    )
