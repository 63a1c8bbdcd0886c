"""The commands on every learner kind of issue 19: train, eval (a shots table for in-context
learners), inspect, report, and verify (learned optimizer; unknown for in-context learners)."""

import json
from pathlib import Path

import pytest

from metacompose.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
KINDS = ["sinusoid_incontext", "sinusoid_cnp", "sinusoid_learned_opt", "digits_5way1shot_incontext",
         "from_data_sums_annealed", "annealed_uniform", "from_data_chain_annealed",
         "from_data_sums_annealed_shared"]  # fmt: skip
CONFIG = {"annealed_uniform": "from_data_sums_annealed"}  # kind -> config, when they differ
LEARNED_OPT = ["algo.eval_inner_steps=5", "algo.args.horizon=3", "algo.args.truncation=3"]
ANNEALED = ["algo.args.replicas=2", "algo.args.anneal_steps=3", "algo.args.eval_contexts=5"]
TINY = {"sinusoid_learned_opt": LEARNED_OPT, "from_data_sums_annealed": ANNEALED,
        "from_data_chain_annealed": [*ANNEALED, "algo.args.contexts=3"],
        "from_data_sums_annealed_shared": ANNEALED,
        "annealed_uniform": [*ANNEALED, "algo.args.routing=uniform"]}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for name in KINDS:
        args = ["train", str(ROOT / "configs" / f"{CONFIG.get(name, name)}.yaml"), "trainer.max_steps=4",
                "trainer.val_check_interval=2", "trainer.checkpoint_every_n_steps=2",
                "trainer.enable_progress_bar=false", "data.val_tasks=4", "data.meta_batch_size=4",
                f"out_dir={out}", f"name={name}", *TINY.get(name, [])]  # fmt: skip
        assert main(args) == 0
    return {n: out / n / "checkpoints" / "last.ckpt" for n in KINDS}


@pytest.mark.parametrize(
    "name", ["sinusoid_incontext", "sinusoid_cnp", "digits_5way1shot_incontext"]
)
def test_eval_prints_a_shots_table_for_in_context_learners(runs, name, tmp_path, capsys):
    js = tmp_path / "e.json"
    assert main(["eval", str(runs[name]), "--tasks", "6", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "no adaptation steps" in out and "shots" in out
    data = json.loads(js.read_text())
    top = 10 if name.startswith("sinusoid") else 1
    assert data["shots"][-1] == top and len(data["mean"]) == len(data["shots"])


def test_eval_of_the_learned_optimizer_is_a_steps_table(runs, capsys):
    assert main(["eval", str(runs["sinusoid_learned_opt"]), "--tasks", "4", "--steps", "30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[0] == "step" and lines[-1].split()[0] == "30"


@pytest.mark.parametrize("name", KINDS)
def test_inspect_runs_on_every_kind(runs, name, tmp_path, capsys):
    assert main(["inspect", str(runs[name]), "--tasks", "2", "--out", str(tmp_path / "i")]) == 0
    out = capsys.readouterr().out
    if "incontext" in name or "cnp" in name:
        assert (tmp_path / "i" / "model.json").exists() and "reading the support set" in out
    else:
        assert (tmp_path / "i" / "graph_0.json").exists()


def test_report_covers_every_kind_and_says_what_does_not_apply(runs, tmp_path):
    args = ["report", *(str(runs[n]) for n in KINDS), "--out", str(tmp_path / "r"), "--tasks", "8"]
    assert main(args) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    by = {e["label"]: e for e in report["checkpoints"]}
    assert "reason" in by["sinusoid_incontext"]["forgetting"]
    assert "reason" in by["sinusoid_incontext"]["adaptation"]
    assert "reason" not in by["sinusoid_learned_opt"]["adaptation"]
    assert (tmp_path / "r" / "report.md").exists()


def test_verify_certifies_learned_optimizer_adaptations(runs, capsys):
    spec = str(ROOT / "configs" / "bounds" / "sinusoid.yaml")
    code = main(["verify", str(runs["sinusoid_learned_opt"]), "--spec", spec, "--tasks", "2",
                 "--tier", "fast"])  # fmt: skip
    assert code in (0, 1, 3)
    assert "2 adaptations" in capsys.readouterr().out


def test_annealed_sum_routes_from_data_in_eval_inspect_and_verify(runs, tmp_path, capsys):
    """The data-routed learner: routing purity (per slot and as a set, the sum's slots being
    interchangeable) in eval's JSON and inspect's routing.json; verify certifies its exported
    graphs (the routed candidates as ReLU blocks)."""
    ckpt = str(runs["from_data_sums_annealed"])
    js = tmp_path / "e.json"
    assert main(["eval", ckpt, "--tasks", "8", "--subset", "held_out", "--json", str(js)]) == 0
    data = json.loads(js.read_text())
    assert data["subset"] == "held_out" and data["steps"] == [0]
    assert set(data["routing"]["slots"]) == {"f", "g"}
    assert 0.0 <= data["routing"]["as_set"]["joint_accuracy"] <= 1.0
    assert "as a set (slots interchangeable)" in capsys.readouterr().out
    out = tmp_path / "i"
    assert main(["inspect", ckpt, "--tasks", "6", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    overlap = json.loads((out / "bank_overlap.json").read_text())  # label-free: bank_overlap.py
    assert overlap["labels"] == [f"{s}[{k}]" for s in "fg" for k in range(4)]
    assert overlap["contexts"] == 5 and len(overlap["shared"]) == 8
    assert "bank overlap: " in said
    routing = json.loads((out / "routing.json").read_text())
    assert "as_set" in routing and (out / "usage_heatmap.png").exists()
    graph = json.loads((out / "graph_0.json").read_text())
    assert graph["routing"] == "hard-from-data"
    assert {n["name"] for n in graph["nodes"] if "candidate" in n} == {"f", "g"}
    assert main(["eval", ckpt, "--tasks", "4", "--steps", "3"]) == 2
    assert "fits each task in closed form" in capsys.readouterr().err
    assert main(["verify", ckpt, "--tasks", "1", "--steps", "3"]) == 2  # as eval: no steps
    assert "has no adaptation steps" in capsys.readouterr().err
    spec = str(ROOT / "configs" / "bounds" / "compositional.yaml")
    code = main(["verify", ckpt, "--spec", spec, "--tasks", "2", "--tier", "fast"])
    assert code in (0, 1, 3)
    assert "2 adaptations" in capsys.readouterr().out


def test_verify_of_an_in_context_learner_is_unknown(runs, capsys):
    """No adapted weights to certify: every claim is unknown (exit 3), never proved."""
    spec = str(ROOT / "configs" / "bounds" / "sinusoid.yaml")
    assert main(["verify", str(runs["sinusoid_incontext"]), "--spec", spec, "--tasks", "2"]) == 3
    assert "0 proved" in capsys.readouterr().out
    assert main(["verify", str(runs["sinusoid_incontext"]), "--tasks", "1", "--steps", "2"]) == 2
    assert "incontext has no adaptation steps" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, match",
    [
        ("algo.args.widht=8", "algo.args.widht: unknown argument of incontext"),
        ("algo.args.encoder=1", "algo.args.encoder: unknown argument"),
        ("algo.args.likelihood=laplace", "likelihood='laplace': expected one of"),
        ("model.args.norm=batch", "batch norm mixes the queries"),
    ],
)
def test_bad_algo_args_fail_in_one_line_before_training(override, match, tmp_path, capsys):
    name = "digits_5way1shot_incontext" if "norm" in override else "sinusoid_incontext"
    args = ["train", str(ROOT / "configs" / f"{name}.yaml"), override, f"out_dir={tmp_path}"]
    assert main(args) == 2
    assert match in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_uniform_routing_is_scored_and_exported_without_a_choice(runs, tmp_path, capsys):
    """The ablation without routing: eval gives its MSE and no routing purity; inspect writes each
    task's graph (every candidate of a slot summed) and says there is no usage table."""
    ckpt = str(runs["annealed_uniform"])
    js = tmp_path / "e.json"
    assert main(["eval", ckpt, "--tasks", "8", "--subset", "held_out", "--json", str(js)]) == 0
    data = json.loads(js.read_text())
    assert data.get("routing") is None and "routing purity" not in capsys.readouterr().out
    out = tmp_path / "i"
    assert main(["inspect", ckpt, "--tasks", "4", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "no routed slots: no usage table" in said and not (out / "bank_overlap.json").exists()
    assert "bank overlap: not measured (the learner reads no single candidate)" in said
    graph = json.loads((out / "graph_0.json").read_text())
    assert graph["routing"] == "uniform" and not (out / "usage.csv").exists()
    assert {n["name"] for n in graph["nodes"]} >= {"f", "f0", "f3", "g", "g3"}
    spec = str(ROOT / "configs" / "bounds" / "compositional.yaml")
    code = main(["verify", ckpt, "--spec", spec, "--tasks", "2", "--tier", "fast"])
    assert code in (0, 1, 3) and "2 adaptations" in capsys.readouterr().out


def test_annealed_chain_is_scored_per_slot_exported_as_a_chain_and_verified(runs, tmp_path, capsys):
    """The chain y = a g(f(x)) + c: its slots are not interchangeable, so eval scores routing
    per slot only; each task's graph is x -> f -> g -> amp; verify reads those graphs."""
    ckpt = str(runs["from_data_chain_annealed"])
    js = tmp_path / "e.json"
    assert main(["eval", ckpt, "--tasks", "8", "--subset", "held_out", "--json", str(js)]) == 0
    data = json.loads(js.read_text())
    assert set(data["routing"]["slots"]) == {"f", "g"} and "as_set" not in data["routing"]
    out = tmp_path / "i"
    assert main(["inspect", ckpt, "--tasks", "6", "--out", str(out)]) == 0
    assert "bank overlap: not measured (the learner is not a sum)" in capsys.readouterr().out
    assert not (out / "bank_overlap.json").exists()
    graph = json.loads((out / "graph_0.json").read_text())
    edges = {(e["src"], e["dst"]) for e in graph["edges"]}
    assert edges == {("x", "f"), ("f", "g"), ("g", "amp")}
    spec = str(ROOT / "configs" / "bounds" / "compositional.yaml")
    code = main(["verify", ckpt, "--spec", spec, "--tasks", "2", "--tier", "fast"])
    assert code in (0, 1, 3) and "2 adaptations" in capsys.readouterr().out


def test_one_shared_bank_is_scored_as_one_bank_drawn_as_one_panel_and_verified(
    runs, tmp_path, capsys
):
    """The shared bank: routing purity as a set with one candidate per bank index
    (``bank[k]``), one heat-map panel of all primitives, graphs of two candidates of one bank."""
    ckpt = str(runs["from_data_sums_annealed_shared"])
    js = tmp_path / "e.json"
    assert main(["eval", ckpt, "--tasks", "8", "--subset", "held_out", "--json", str(js)]) == 0
    as_set = json.loads(js.read_text())["routing"]["as_set"]
    assert set(as_set["matching"]) <= {f"bank[{k}]" for k in range(8)}
    assert len(as_set["matching"]) == 8  # 8 candidates, 8 primitives: all matched
    out = tmp_path / "i"
    assert main(["inspect", ckpt, "--tasks", "6", "--out", str(out)]) == 0
    labels = json.loads((out / "bank_overlap.json").read_text())["labels"]
    assert (
        labels == [f"bank[{k}]" for k in range(8)] and "bank overlap: " in capsys.readouterr().out
    )
    routing = json.loads((out / "routing.json").read_text())
    assert [(h["slot"], h["factor"]) for h in routing["heatmap"]] == [("bank", "primitive")]
    per_factor = routing["as_set"]["accuracy"]  # the panel's accuracy: the tasks' values matched
    assert routing["heatmap"][0]["accuracy"] == pytest.approx(sum(per_factor.values()) / 2)
    graph = json.loads((out / "graph_0.json").read_text())
    picked = {n["name"]: n for n in graph["nodes"] if "candidate" in n}
    assert set(picked) == {"f", "g"} and picked["f"]["candidate"] < picked["g"]["candidate"]
    assert {n["module"] for n in picked.values()} <= {f"bank[{k}]" for k in range(8)}
    usage = (out / "usage.csv").read_text().splitlines()
    assert len(usage) == 9 and all(line.startswith("bank,") for line in usage[1:])
    spec = str(ROOT / "configs" / "bounds" / "compositional.yaml")
    assert main(["verify", ckpt, "--spec", spec, "--tasks", "2", "--tier", "fast"]) in (0, 1, 3)
    assert "2 adaptations" in capsys.readouterr().out
