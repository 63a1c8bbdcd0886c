"""``scripts/bank_coverage.py``: every true primitive against every candidate of a trained
data-routed sum learner (both banks as one set), the matching, the gaps, the label-free overlap
and the heat map; other learners refused in one line."""

from pathlib import Path

import pytest
from annealed_runs import SMALL
from script_loader import run_script_cli

from metacompose.config import load_config
from metacompose.evaluate import load_checkpoint
from metacompose.training import train

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str):
    return run_script_cli("bank_coverage", *args)


def trained(tmp_path, config: str, *extra: str) -> Path:
    cfg = load_config(ROOT / "configs" / config, [*SMALL, f"out_dir={tmp_path}", *extra])
    return train(cfg).checkpoint


def cells(done, rows: int) -> list[list[str]]:
    """The table's rows as ``[name, p, cell, cell, ...]`` (the first ``rows`` after its header)."""
    lines = done.stdout.splitlines()
    start = lines.index("lowest residual @ its context, per candidate (* matched)")
    return [line.split() for line in lines[start + 2 : start + 2 + rows]]


@pytest.mark.parametrize("shared", [False, True])
def test_every_primitive_against_every_candidate_with_one_match_each(tmp_path, shared):
    config = "from_data_sums_annealed_shared.yaml" if shared else "from_data_sums_annealed.yaml"
    extra = ["algo.args.candidates=[8]"] if shared else ["algo.args.candidates=[4,4]"]
    ckpt = trained(tmp_path, config, *extra)
    png = tmp_path / "coverage.png"
    done = run(str(ckpt), "--params", "3", "--png", str(png))
    assert done.returncode == 0, done.stderr[-2000:]
    learner, _, family = load_checkpoint(ckpt)
    names = [*family.inner, *family.outer]
    rows = cells(done, 3 * len(names))
    header = done.stdout.splitlines()[1].split()
    assert header == ([f"bank[{k}]" for k in range(8)] if shared else
                      [f"{s}[{k}]" for s in "fg" for k in range(4)])  # fmt: skip
    # one row per primitive and parameter value (the family's range, 3 values), a cell per
    # candidate, one * per row and each candidate matched to one primitive at most
    assert [r[0] for r in rows] == [n for n in names for _ in range(3)]
    lo, hi = family.param_range
    assert [r[1] for r in rows[:3]] == [f"p={v:.2f}" for v in (lo, (lo + hi) / 2, hi)]
    starred = {}
    for r in rows:
        marks = [i for i, c in enumerate(r[2:]) if c.startswith("*")]
        assert len(r) == 2 + len(header) and len(marks) == 1
        starred.setdefault(r[0], set()).add(marks[0])
    assert all(len(v) == 1 for v in starred.values())
    assert len({next(iter(v)) for v in starred.values()}) == len(starred)
    # a cell is a residual fraction >= 0 at a context of the evaluation grid
    grid = {f"{c:+.2f}" for c in learner.eval_grid.tolist()}
    for r in rows:
        for c in r[2:]:
            value, at = c.lstrip("*").split("@")
            assert float(value) >= 0 and at in grid
    assert any(line.startswith("  overlap: ") for line in done.stdout.splitlines())
    assert png.exists() and png.stat().st_size > 1000 and f"wrote {png}" in done.stdout


def test_other_learners_are_refused_in_one_line(tmp_path):
    sinusoid = load_config(ROOT / "configs" / "sinusoid.yaml",
                           ["trainer.max_steps=2", "trainer.val_check_interval=2",
                            "data.val_tasks=2", "trainer.enable_progress_bar=false",
                            f"out_dir={tmp_path}"])  # fmt: skip
    cases = {
        "the sum structure of annealed_sum only": train(sinusoid).checkpoint,
        "the sum structure of annealed_sum only ": trained(
            tmp_path, "from_data_chain_annealed.yaml", "algo.args.contexts=3", "name=chain"
        ),
        "uniform routing reads no single candidate": trained(
            tmp_path, "from_data_sums_annealed.yaml", "algo.args.routing=uniform", "name=uni"
        ),
    }
    for said, ckpt in cases.items():
        done = run(str(ckpt))
        assert done.returncode == 2 and done.stdout == "", said
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("bank_coverage.py: error: ") and said.strip() in line
