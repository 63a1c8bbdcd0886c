"""``scripts/bench_real.py --spec PATH``: any grouped dataset, group-level numbers and verdicts."""

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from script_loader import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_real")


def write_spec(tmp_path: Path, rows: int = 14) -> Path:
    """A dataset outside the repository: 20 groups, y = group level + slope * x + noise."""
    g = torch.Generator().manual_seed(0)
    lines = ["grp,x,y"]
    for grp in range(20):
        level, slope = torch.randn(2, generator=g).tolist()
        for _ in range(rows):
            x = float(torch.randn((), generator=g))
            lines.append(
                f"{grp},{x:.5f},{level + slope * x + 0.1 * float(torch.randn((), generator=g)):.5f}"
            )
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    path = tmp_path / "spec.yaml"
    path.write_text("name: outside\ndataset: local/d\ncsv_path: d.csv\ngroup: grp\n"
                    "inputs: [x]\ntarget: y\nmin_rows: 8\n")  # fmt: skip
    return path


def test_spec_outside_the_repo_runs_with_screen_groups_and_verdicts(bench, tmp_path, capsys,
                                                                    monkeypatch):  # fmt: skip
    spec, out = write_spec(tmp_path), tmp_path / "out.json"
    monkeypatch.setattr(sys, "argv", [
        "bench_real.py", "--spec", str(spec), "--shots", "3", "--methods", "scratch", "maml",
        "mixed_effects", "gp_deep_mean", "alpaca", "--iterations", "3", "--val-tasks", "20",
        "--test-tasks", "40",
        "--finetune-steps", "2", "--eval-steps", "2", "--json", str(out)])  # fmt: skip
    bench.main()
    text = capsys.readouterr().out
    # min_rows 8 < K 3 + Q 10: raised so that sampling works, and said so
    assert "min_rows raised from 8 to 13 = K 3 + Q 10" in text
    assert "kept 20 of 20 groups of 'grp' with >= 13 complete rows" in text
    assert "groups meta-train/val/test 12/4/4" in text
    assert "group " in text and "[4 groups]" in text
    assert re.search(r"best on meta-val (maml|gp_deep_mean|alpaca) - scratch:", text)
    assert "(paired, t over groups) ->" in text
    rows = json.loads(out.read_text())
    assert {r["method"] for r in rows} == {"scratch", "maml", "mixed_effects", "gp_deep_mean",
                                           "alpaca"}  # fmt: skip
    for m in ("gp_deep_mean", "alpaca"):  # meta-learned methods: judged against each baseline
        assert f"{m} vs scratch" in text
    assert all(r["group"]["n_groups"] == 4 and len(r["groups"]) == 40 for r in rows)
    assert "note: only 4 meta-test groups: the verdicts use intervals over them" in text


def test_enough_meta_test_groups_get_no_note(bench, tmp_path, capsys):
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text() + "fractions: [0.5, 0.2, 0.3]\n")  # 10 / 4 / 6 groups
    args = bench_args(bench, spec)
    bench.prepare_setting(str(spec), 3, args)
    text = capsys.readouterr().out
    assert "groups meta-train/val/test 10/4/6" in text and "note:" not in text


def bench_args(bench, spec):
    """The parsed arguments ``prepare_setting`` reads, as ``main`` parses them."""
    import argparse

    return argparse.Namespace(spec=[str(spec)], shots=[3], query=None, families=[], seed=0,
                              task_seed=0, val_tasks=20, test_tasks=40)  # fmt: skip


def test_groups_too_small_for_the_query_are_skipped_in_one_line_and_query_fits_them(
    bench, tmp_path, capsys, monkeypatch
):
    spec = write_spec(tmp_path, rows=9)  # 9 rows per group: K 3 + Q 10 cannot fit
    argv = ["bench_real.py", "--spec", str(spec), "--shots", "3", "--methods", "scratch",
            "mixed_effects", "--val-tasks", "10", "--test-tasks", "20", "--finetune-steps", "2"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        bench.main()
    assert done.value.code == 1
    text = capsys.readouterr().out
    skipped = [line for line in text.splitlines() if "skipped:" in line]
    assert len(skipped) == 1 and "0 of 20 groups of 'grp' have >= 13 complete rows" in skipped[0]
    assert "min_rows (and shots + query) <= 9" in skipped[0]
    assert "Traceback" not in text and text.rstrip().endswith("skipped 1 setting(s): spec K=3")
    monkeypatch.setattr(sys, "argv", [*argv, "--query", "6"])
    bench.main()
    text = capsys.readouterr().out
    assert "K + Q = 3 + 6 <= 9 rows per group" in text and "skipped" not in text
    assert "mixed_effects" in text


def rows(method, values, groups, val):
    n = len(values)
    return {"setting": "f K=5", "family": "f", "shots": 5, "seed": 0, "method": method,
            "metric": "mse", "mean": sum(values) / n, "ci95": 0.0, "n_tasks": n, "steps": 0,
            "lr": None, "train_iterations": 0, "train_seconds": 0.0, "eval_seconds": 0.0,
            "values": values, "groups": groups, "val_mean": val}  # fmt: skip


def test_markdown_group_rows_use_the_method_best_on_meta_val(bench, tmp_path, capsys):
    groups = [0, 0, 1, 1, 2, 2]
    f = tmp_path / "a.json"
    f.write_text(json.dumps([
        rows("scratch", [1.0, 1.0, 1.2, 1.2, 0.9, 0.9], groups, 1.0),
        rows("mixed_effects", [0.5, 0.5, 0.52, 0.52, 0.48, 0.48], groups, 0.5),
        rows("maml", [0.2, 0.2, 0.2, 0.2, 0.2, 0.2], groups, 0.4),  # best on meta-val
        rows("anil", [0.1, 0.1, 0.1, 0.1, 0.1, 0.1], groups, 0.45),  # best on meta-test only
    ]))  # fmt: skip
    bench.markdown([f])
    md = capsys.readouterr().out.splitlines()
    assert "| best on meta-val | maml |" in md
    # scratch group means 1.0, 1.2, 0.9; maml 0.2: difference -0.8333, t(2) interval
    line = next(s for s in md if s.startswith("| best − scratch"))
    assert "-0.8333 ±" in line and line.endswith("win |")
    assert "| best − mixed_effects (paired over groups) | -0.3000 ± " in "\n".join(md)
    assert any(s.startswith("| maml | 0.2000 ± 0.0000 [3 groups]") for s in md)


def test_ensemble_row_names_its_members_and_weight_and_merges_back(bench, tmp_path, capsys,
                                                                    monkeypatch):  # fmt: skip
    """``ensemble`` pairs the learner best on meta-val (not gp_deep_mean: a GP) with gp_dkt; its
    row keeps the members and the weight through ``--json`` and ``--merge``; without gp_dkt it is
    skipped in one line."""
    spec, out = write_spec(tmp_path), tmp_path / "out.json"
    argv = ["bench_real.py", "--spec", str(spec), "--shots", "3", "--iterations", "3",
            "--val-tasks", "20", "--test-tasks", "40", "--eval-steps", "2", "--budget", "0"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", [*argv, "--methods", "maml", "anil", "gp_deep_mean", "gp_dkt",
                                      "ensemble", "--json", str(out)])  # fmt: skip
    bench.main()
    text = capsys.readouterr().out
    rows = {r["method"]: r for r in json.loads(out.read_text())}
    ens = rows["ensemble"]
    first = min(("maml", "anil"), key=lambda m: rows[m]["val_mean"])
    assert ens["members"] == [first, "gp_dkt"] and 0 <= ens["weight"] <= 1
    assert ens["val_mean"] <= min(rows[first]["val_mean"], rows["gp_dkt"]["val_mean"]) + 1e-9
    assert f"x {first} + " in text and "x gp_dkt (weights chosen on meta-val)" in text
    (merged,) = bench.load_rows([out]).values()
    assert merged["ensemble"].members == (first, "gp_dkt")
    assert merged["ensemble"].weight == ens["weight"]
    monkeypatch.setattr(sys, "argv", [*argv, "--methods", "maml", "ensemble"])
    bench.main()
    text = capsys.readouterr().out
    assert "ensemble: skipped (needs one of gp_dkt, mixed_effects and one of maml, fomaml" in text


def test_ensemble_second_member_is_the_statistical_baseline_best_on_meta_val(bench, tmp_path,
                                                                            capsys, monkeypatch):  # fmt: skip
    """With both gp_dkt and mixed_effects run, the second member is the one with the lower
    meta-val MSE; its blend is scored on the same tasks and named in the verdict label."""
    spec, out = write_spec(tmp_path), tmp_path / "out.json"
    monkeypatch.setattr(sys, "argv", [
        "bench_real.py", "--spec", str(spec), "--shots", "3", "--iterations", "3",
        "--val-tasks", "20", "--test-tasks", "40", "--eval-steps", "2", "--budget", "0",
        "--methods", "maml", "gp_dkt", "mixed_effects", "ensemble", "--json", str(out)])  # fmt: skip
    bench.main()
    capsys.readouterr()
    rows = {r["method"]: r for r in json.loads(out.read_text())}
    second = min(("gp_dkt", "mixed_effects"), key=lambda m: rows[m]["val_mean"])
    ens = rows["ensemble"]
    assert ens["members"] == ["maml", second]
    assert ens["val_mean"] <= min(rows["maml"]["val_mean"], rows[second]["val_mean"]) + 1e-9
    (merged,) = bench.load_rows([out]).values()
    label = bench.label(merged["ensemble"])
    assert (
        label
        == f"ensemble ({ens['weight']:g} maml" + ("" if second == "gp_dkt" else f", {second}") + ")"
    )


class _Predicts(torch.nn.Module):
    def predict_queries(self, batch, *, steps: int = 0):
        return batch.query_y


def _result(method: str, val: float | None, *, predicts: bool = True):
    from metacompose.baselines.compare import MethodResult
    from metacompose.report.stats import over_tasks

    v = torch.ones(4)
    return MethodResult(method, "mse", over_tasks(v), 0, None, 0, 0.0, 0.0, v, val_mean=val,
                        learner=_Predicts() if predicts else None)  # fmt: skip


@pytest.mark.parametrize(
    "vals, second",
    [
        ({"gp_dkt": 0.3, "mixed_effects": 0.5}, "gp_dkt"),
        ({"gp_dkt": 0.5, "mixed_effects": 0.3}, "mixed_effects"),
        ({"mixed_effects": 0.4, "gp_dkt": 0.4}, "gp_dkt"),  # a tie: the one named first
        ({"gp_dkt": 0.5, "mixed_effects": float("nan")}, "gp_dkt"),
        ({"gp_dkt": float("inf"), "mixed_effects": 0.9}, "mixed_effects"),
        ({"mixed_effects": 0.9}, "mixed_effects"),
        ({"gp_dkt": float("nan"), "mixed_effects": None}, None),
        ({}, None),
    ],
)
def test_ensemble_members_are_the_finite_lowest_on_meta_val(bench, monkeypatch, capsys, vals,
                                                            second):  # fmt: skip
    """First member: the lowest finite meta-val MSE among the meta-learners that return their
    predictions (a GP method or a NaN one is never first); second: the lowest finite among
    gp_dkt and mixed_effects; either missing: skipped in one line."""
    picked = []
    monkeypatch.setattr(bench, "run_ensemble", lambda a, b, family, plan: picked.append((a, b)))
    results = {"maml": _result("maml", 0.2), "anil": _result("anil", 0.1, predicts=False),
               "metasgd": _result("metasgd", float("nan")), "fomaml": _result("fomaml", 0.15),
               "gp_deep_mean": _result("gp_deep_mean", 0.01)}  # fmt: skip
    results |= {m: _result(m, v) for m, v in vals.items()}
    family = type("F", (), {"metric": "mse"})()
    bench.ensemble_of(results, family, None, "f K=5")
    if second is None:
        said = capsys.readouterr()
        assert not picked and "ensemble: skipped (needs one of gp_dkt, mixed_effects" in (
            said.out + said.err
        )
    else:
        ((a, b),) = picked
        assert (a.method, b.method) == ("fomaml", second)


@pytest.mark.parametrize(
    "vals, seconds",
    [
        ({"gp_dkt": 0.3, "mixed_effects": 0.5}, ("gp_dkt", "mixed_effects")),
        ({"mixed_effects": 0.3, "gp_dkt": 0.5}, ("gp_dkt", "mixed_effects")),
        ({"gp_dkt": 0.5, "mixed_effects": float("nan")}, ("gp_dkt",)),
        ({"gp_dkt": float("inf"), "mixed_effects": 0.9}, ("mixed_effects",)),
        ({"gp_dkt": float("nan"), "mixed_effects": None}, None),
    ],
)
def test_stack_members_are_the_first_and_every_finite_statistical_baseline(bench, monkeypatch,
                                                                           capsys, vals, seconds):  # fmt: skip
    """The stack's first member is the ensemble's; then gp_dkt and mixed_effects (in that order)
    where finite on meta-val; with neither it is skipped in one line naming the stack."""
    picked = []
    monkeypatch.setattr(bench, "run_stack", lambda ms, family, plan: picked.append(ms))
    results = {"maml": _result("maml", 0.2), "fomaml": _result("fomaml", 0.15),
               "gp_deep_mean": _result("gp_deep_mean", 0.01)}  # fmt: skip
    results |= {m: _result(m, v) for m, v in vals.items()}
    family = type("F", (), {"metric": "mse"})()
    bench.ensemble_of(results, family, None, "f K=5", "stack")
    if seconds is None:
        said = capsys.readouterr()
        assert not picked and "stack: skipped (needs one of gp_dkt, mixed_effects" in (
            said.out + said.err
        )
    else:
        (members,) = picked
        assert tuple(r.method for r in members) == ("fomaml", *seconds)


def test_stack_row_runs_end_to_end_merges_back_and_is_labelled(bench, tmp_path, capsys,
                                                               monkeypatch):  # fmt: skip
    """``stack`` blends the chosen learner with gp_dkt and mixed_effects: its weights sum to one,
    its meta-val MSE is at or below the two-member ensemble's (an edge of its grid) and each
    member's, and its row keeps members and weights through ``--json`` and ``--merge``."""
    spec, out = write_spec(tmp_path), tmp_path / "out.json"
    monkeypatch.setattr(sys, "argv", [
        "bench_real.py", "--spec", str(spec), "--shots", "3", "--iterations", "3",
        "--val-tasks", "20", "--test-tasks", "40", "--eval-steps", "2", "--budget", "0",
        "--methods", "maml", "gp_dkt", "mixed_effects", "ensemble", "stack", "--json", str(out),
    ])  # fmt: skip
    bench.main()
    text = capsys.readouterr().out
    rows = {r["method"]: r for r in json.loads(out.read_text())}
    st = rows["stack"]
    assert st["members"] == ["maml", "gp_dkt", "mixed_effects"]
    assert sum(st["weights"]) == pytest.approx(1.0) and st["weight"] == st["weights"][0]
    assert all(w >= 0 and round(w * 10, 9) == round(w * 10) for w in st["weights"])
    for m in ("maml", "gp_dkt", "mixed_effects", "ensemble"):
        assert st["val_mean"] <= rows[m]["val_mean"] + 1e-9, m
    assert "stack: " in text and "x mixed_effects (weights chosen on meta-val)" in text
    (merged,) = bench.load_rows([out]).values()
    assert merged["stack"].weights == tuple(st["weights"])
    named = [f"{w:g} {m}" for w, m in zip(st["weights"], st["members"], strict=True) if w]
    assert bench.label(merged["stack"]) == f"stack ({', '.join(named)})"


def test_ensemble_label_names_a_second_member_other_than_gp_dkt(bench):
    """Rows written before the mixed model could be a member (second member gp_dkt) keep their
    label; a mixed-model partner is named."""
    older = _result("ensemble", 0.1)
    older.members, older.weight = ("routed", "gp_dkt"), 0.6
    assert bench.label(older) == "ensemble (0.6 routed)"
    older.members = ("maml", "mixed_effects")
    assert bench.label(older) == "ensemble (0.6 maml, mixed_effects)"
    assert bench.label(_result("maml", 0.1)) == "maml"


def test_stack_runs_only_when_named(bench, tmp_path, capsys, monkeypatch):
    """``stack`` is opt-in: a run naming no methods skips it (it did not pay,
    docs/real_data.md); ``--methods ... stack`` runs it (the test above)."""
    assert "stack" in bench.REG_METHODS and "stack" not in bench.DEFAULT_METHODS
    assert "ensemble" in bench.DEFAULT_METHODS
    ran = []
    monkeypatch.setattr(bench, "ensemble_of", lambda *a: ran.append(a[-1]))
    monkeypatch.setattr(bench, "train_method", lambda m, *a: ran.append(m) or _result(m, 0.1))
    args = type("A", (), {"methods": None, "val_tasks": 2, "test_tasks": 2, "task_seed": 0, "seed": 0,
                          "device": "cpu"})()  # fmt: skip
    cfg = type("C", (), {"task": type("T", (), {"query": 2})()})()
    family = type("F", (), {"name": "f", "metric": "mse", "group_keys": None})()
    bench.bench_config(cfg, family, 5, bench.REG_METHODS, args, [])
    assert "ensemble" in ran and "stack" not in ran and "mixed_effects" in ran


def test_a_method_the_data_defeats_is_left_out_in_one_line_and_the_rest_is_kept(bench, tmp_path,
                                                                              capsys, monkeypatch):  # fmt: skip
    """Collinear inputs (``x2`` a copy of ``x``): the mixed model's fixed effects are not identified; that
    method fails in one line naming the cause, every other method's row is written, exit 1."""
    g = torch.Generator().manual_seed(0)
    lines = ["grp,x,x2,y"]
    for grp in range(20):
        for _ in range(14):
            x = float(torch.randn((), generator=g))
            noise = 0.1 * float(torch.randn((), generator=g))
            lines.append(f"{grp},{x:.5f},{x:.5f},{grp / 10 + x + noise:.5f}")
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    spec, out = tmp_path / "spec.yaml", tmp_path / "out.json"
    spec.write_text("name: collinear\ncsv_path: d.csv\ngroup: grp\ninputs: [x, x2]\ntarget: y\n"
                    "min_rows: 13\n")  # fmt: skip
    monkeypatch.setattr(sys, "argv", [
        "bench_real.py", "--spec", str(spec), "--shots", "3", "--methods", "scratch",
        "mixed_effects", "--iterations", "3", "--val-tasks", "20", "--test-tasks", "40",
        "--finetune-steps", "2", "--eval-steps", "2", "--json", str(out)])  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        bench.main()
    assert stop.value.code == 1
    text = capsys.readouterr().out
    assert re.search(r"mixed_effects: failed, left out \(mixed model: the 3 fixed effects .* "
                     r"have rank 2 .*collinear\)", text), text  # fmt: skip
    assert text.rstrip().endswith("failed 1 method run(s): mixed_effects (collinear K=3)")
    assert [r["method"] for r in json.loads(out.read_text())] == ["scratch"]
