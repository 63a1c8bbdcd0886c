"""``scripts/bench_real.py --merge [--markdown]``: one table from runs split across processes."""

import gzip
import json

import pytest
from script_loader import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_real")


def rows(setting, method, values):
    n = len(values)
    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    return {"setting": setting, "family": "f", "shots": 5, "seed": 0, "method": method,
            "metric": "mse", "mean": mean, "ci95": 1.96 * sd / n**0.5, "n_tasks": n,
            "steps": 3, "lr": None, "train_iterations": 7, "train_seconds": 1.0,
            "eval_seconds": 0.1, "values": values}  # fmt: skip


def test_merge_and_markdown_join_split_runs(bench, tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps([rows("f K=5", "scratch", [1.0, 1.2, 0.8, 1.0]),
                             rows("f K=5", "pretrain_finetune", [0.50, 0.52, 0.48, 0.50])]))  # fmt: skip
    b.write_text(json.dumps([rows("f K=5", "maml", [0.20, 0.22, 0.18, 0.20]),
                             rows("f K=5", "anil", [0.49, 0.50, 0.51, 0.50])]))  # fmt: skip
    bench.merge([a, b])
    out = capsys.readouterr().out
    assert "maml - scratch: -0.8000" in out and "maml - pretrain_finetune: -0.3000" in out
    assert out.count("intervals apart") == 2
    bench.markdown([a, b])
    md = capsys.readouterr().out.splitlines()
    assert md[0] == "| method | f K=5 |"
    assert any(line.startswith("| maml | **0.2000 ± ") for line in md)
    assert md[-1] == "| best apart from scratch / pretrain_finetune | yes / yes |"
    # a best method inside the baseline's interval is reported as not apart
    b.write_text(json.dumps([rows("f K=5", "anil", [0.30, 0.70, 0.40, 0.60])]))
    bench.markdown([a, b])
    assert capsys.readouterr().out.splitlines()[-1].endswith("| yes / **no** |")


def test_a_meta_learner_clearly_worse_is_not_said_to_overlap(bench, tmp_path, capsys):
    a = tmp_path / "a.json"
    a.write_text(json.dumps([rows("f K=5", "scratch", [0.10, 0.12, 0.08, 0.10]),
                             rows("f K=5", "pretrain_finetune", [0.30, 0.50, 0.10, 0.40]),
                             rows("f K=5", "maml", [0.34, 0.36, 0.33, 0.35])]))  # fmt: skip
    bench.merge([a])
    out = capsys.readouterr().out
    assert "maml - scratch: +0.2450" in out and "maml - scratch" in out
    said = {line.split(": ")[0].split()[-1]: line.rsplit("intervals ", 1)[1]
            for line in out.splitlines() if "paired over tasks" in line}  # fmt: skip
    assert said == {"scratch": "apart, worse", "pretrain_finetune": "overlap"}


def test_merge_reads_gzipped_runs_like_plain_ones(bench, tmp_path, capsys):
    """Kept results (docs/results/) are gzipped JSON: the same table as from the plain file."""
    data = json.dumps([rows("f K=5", "scratch", [1.0, 1.2, 0.8, 1.0]),
                       rows("f K=5", "maml", [0.20, 0.22, 0.18, 0.20])])  # fmt: skip
    plain, packed = tmp_path / "a.json", tmp_path / "a.json.gz"
    plain.write_text(data)
    packed.write_bytes(gzip.compress(data.encode()))
    bench.merge([plain])
    want = capsys.readouterr().out
    bench.merge([packed])
    assert capsys.readouterr().out == want and "maml - scratch: -0.8000" in want


@pytest.mark.parametrize(
    "name, content, said",
    [
        ("missing.json", None, "No such file or directory"),
        ("dict.json", b'{"setting": "f K=5"}', "not a list of rows"),
        ("row.json", b'[{"setting": "f K=5"}]', "no key 'method'"),
        ("broken.json", b"[{", "(not written by --json)"),
        ("fake.json.gz", b"zz", "Not a gzipped file"),
        ("ints.json", b"[1]", "(not written by --json)"),
        ("empty.json", b"[]", "no results to merge (every setting of the run was skipped"),
        (
            "nosetting.json",
            json.dumps([{**rows("f K=5", "maml", [1.0, 2.0]), "setting": None}]).encode(),
            "setting None",
        ),
        (
            "seednull.json",
            json.dumps([{**rows("f K=5", "maml", [1.0, 2.0]), "seed": None}]).encode(),
            "seed None",
        ),
    ],
)
def test_merge_of_a_bad_file_exits_in_one_line(bench, tmp_path, capsys, name, content, said):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SystemExit) as e:
        bench.load_rows([path])
    message = capsys.readouterr().err
    assert e.value.code == 2  # bad input, as everywhere
    assert message.startswith(f"bench_real.py: --merge {path}: ") and said in message
    assert message.count("\n") == 1


def grouped_rows(setting, method, per_group, seed, val):
    """Rows of 3 tasks in each of 4 groups; ``per_group[g]``: the value of every task of g."""
    values = [v for v in per_group for _ in range(3)]
    groups = [g for g in range(len(per_group)) for _ in range(3)]
    return {**rows(setting, method, values), "seed": seed, "groups": groups, "val_mean": val}


def test_verdict_table_puts_seeds_side_by_side_and_counts_wins(bench, tmp_path, capsys):
    """The learner chosen on meta-val (not on meta-test) is judged, paired over groups."""
    base = {"scratch": [1.0, 1.3, 0.9, 1.1], "pretrain_finetune": [0.9, 0.95, 0.92, 0.9],
            "mixed_effects": [0.6, 0.62, 0.58, 0.61], "gp_dkt": [0.5, 0.55, 0.52, 0.5]}  # fmt: skip
    seed0 = [grouped_rows("f K=5", m, v, 0, None) for m, v in base.items()]
    # seed 0: maml is best on meta-val and below every baseline in every group -> wins all
    seed0 += [grouped_rows("f K=5", "maml", [0.2, 0.25, 0.21, 0.2], 0, 0.1),
              grouped_rows("f K=5", "anil", [0.1, 0.1, 0.1, 0.1], 0, 0.3)]  # fmt: skip
    # seed 1: anil is best on meta-val but worse than the GP in every group -> a loss
    seed1 = [grouped_rows("f K=5", m, v, 1, None) for m, v in base.items()]
    seed1 += [grouped_rows("f K=5", "anil", [0.7, 0.72, 0.69, 0.7], 1, 0.1),
              grouped_rows("f K=5", "maml", [0.1, 0.1, 0.1, 0.1], 1, 0.3),
              grouped_rows("f K=10", "metasgd", [0.1, 0.1, 0.1, 0.1], 1, 0.2)]  # fmt: skip
    seed1[-1]["mean"] = float("nan")
    a, b = tmp_path / "s0.json", tmp_path / "s1.json"
    a.write_text(json.dumps(seed0))
    b.write_text(json.dumps(seed1))
    bench.verdict_table([b, a])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| cell | chosen on meta-val (seed 0 / 1) | vs scratch |")
    assert (
        out[2]
        == "| f K=5 | maml / anil | win / win | win / win | win / **loss** | win / **loss** | yes / no |"
    )
    assert out[3].startswith("| f K=10 | - / metasgd |")
    assert "- seed 0: wins against every baseline in 1 of 1 cells (f K=5); losses: none" in out[5]
    assert "seed 1: wins against every baseline in 0 of 2 cells (none)" in out[6]
    assert "f K=5 vs mixed_effects, f K=5 vs gp_dkt" in out[6] and "metasgd (f K=10)" in out[6]
    # in hindsight seed 1's maml would have won f K=5; f K=10 has no baselines to beat
    hindsight = "in hindsight, some meta-learner wins against every baseline in {} cells"
    assert out[5].endswith(hindsight.format(1) + " (picked on meta-test, not a claim)")
    assert out[6].endswith(hindsight.format(1) + " (picked on meta-test, not a claim)")


def test_hindsight_counts_no_learner_that_diverged_or_misses_a_baseline(bench, tmp_path, capsys):
    """A learner below every baseline in every group counts in hindsight only when its values are
    finite and the cell has every baseline."""
    base = {"scratch": [1.0, 1.3, 0.9, 1.1], "pretrain_finetune": [0.9, 0.95, 0.92, 0.9],
            "mixed_effects": [0.6, 0.62, 0.58, 0.61], "gp_dkt": [0.5, 0.55, 0.52, 0.5]}  # fmt: skip
    rows = [grouped_rows("f K=5", m, v, 0, None) for m, v in base.items()]
    rows += [grouped_rows("f K=5", "maml", [0.7, 0.7, 0.7, 0.7], 0, 0.1),  # chosen, loses to gp
             grouped_rows("f K=5", "anil", [0.1, 0.1, 0.1, float("nan")], 0, 0.3)]  # fmt: skip
    rows += [grouped_rows("f K=10", m, v, 0, None) for m, v in base.items() if m != "gp_dkt"]
    rows += [grouped_rows("f K=10", "maml", [0.1, 0.1, 0.1, 0.1], 0, 0.1)]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(rows))
    bench.verdict_table([path])
    out = capsys.readouterr().out.splitlines()
    assert out[3].startswith("| f K=10 | maml | win | win | win | - |")
    assert "in 0 of 2 cells (none)" in out[5]
    assert out[5].endswith(
        "wins against every baseline in 0 cells (picked on meta-test, not a claim)"
    )
    rows.append(grouped_rows("f K=10", "gp_dkt", base["gp_dkt"], 0, None))
    rows[5].update(values=[0.1] * 12, mean=0.1)  # anil finite: it wins f K=5 in hindsight
    path.write_text(json.dumps(rows))
    bench.verdict_table([path])
    out = capsys.readouterr().out.splitlines()
    assert "in 1 of 2 cells (f K=10)" in out[5]
    assert out[5].endswith("baseline in 2 cells (picked on meta-test, not a claim)")


def test_verdict_table_counts_a_cell_where_no_meta_learner_is_finite(bench, tmp_path, capsys):
    cell = [grouped_rows("f K=5", "scratch", [1.0, 1.1, 0.9, 1.0], 0, None),
            grouped_rows("f K=5", "maml", [0.1, 0.1, 0.1, 0.1], 0, float("nan")),
            grouped_rows("f K=5", "anil", [0.1, 0.1, 0.1, 0.1], 0, 0.2)]  # fmt: skip
    for d in cell[1:]:
        d["mean"] = float("nan")
    cell[2]["val_mean"] = float("nan")
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(cell))
    bench.verdict_table([path])
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith("| f K=5 | none finite | - |") and out[2].endswith("| no |")
    assert "in 0 of 1 cells (none)" in out[4] and "maml (f K=5), anil (f K=5)" in out[4]
    assert out[4].endswith("baseline in 0 cells (picked on meta-test, not a claim)")


def test_verdict_table_names_a_chosen_ensembles_member_and_weight(bench, tmp_path, capsys):
    """An ensemble row merged in from another run is chosen on meta-val like any learner and
    shown with its first member and that member's weight."""
    base = {"scratch": [1.0, 1.3, 0.9, 1.1], "gp_dkt": [0.5, 0.55, 0.52, 0.5]}
    cell = [grouped_rows("f K=5", m, v, 0, None) for m, v in base.items()]
    cell.append(grouped_rows("f K=5", "routed", [0.5, 0.56, 0.5, 0.52], 0, 0.3))
    ens = grouped_rows("f K=5", "ensemble", [0.4, 0.45, 0.41, 0.4], 0, 0.25)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(cell))
    b.write_text(json.dumps([{**ens, "members": ["routed", "gp_dkt"], "weight": 0.6}]))
    bench.verdict_table([a, b])
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith("| f K=5 | ensemble (0.6 routed) | win | - | - | win |")
