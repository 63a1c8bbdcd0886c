"""``eval --routing`` / ``inspect --routing``: a checkpoint routed at evaluation another way than
it was trained (the descriptor-trained chain routed from data: the issue's intermediate; a routed
learner's router argmax or support search), and one-line refusals before any output exists."""

import json
from pathlib import Path

import pytest
import torch

from metacompose.cli.main import main
from metacompose.evaluate import evaluate, load_checkpoint
from metacompose.router.policies.support_search import SupportSearchRouting

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.checkpoint_every_n_steps=2",
         "trainer.enable_progress_bar=false", "data.val_tasks=4", "data.meta_batch_size=4"]  # fmt: skip
RUNS = {
    "chain_descriptor": ("from_data_chain_annealed", [
        "algo.args.replicas=1", "algo.args.anneal_steps=3", "algo.args.eval_contexts=5",
        "algo.args.contexts=3", "task.args.descriptor=onehot", "algo.args.routing=descriptor"]),
    "routed": ("compositional", ["algo.eval_inner_steps=2"]),
    "rules": ("compositional_rules", ["algo.eval_inner_steps=2"]),
    "anchors": ("compositional_identifiable_program_sin_solo", ["algo.eval_inner_steps=2"]),
    "sinusoid": ("sinusoid", []),
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for name, (config, extra) in RUNS.items():
        args = ["train", str(ROOT / "configs" / f"{config}.yaml"), *SHORT, f"out_dir={out}",
                f"name={name}", *extra]  # fmt: skip
        assert main(args) == 0
    return {n: str(out / n / "checkpoints" / "last.ckpt") for n in RUNS}


def _eval(ckpt: str, js: Path, *extra: str) -> dict:
    args = ["eval", ckpt, "--tasks", "12", "--subset", "held_out", "--json", str(js), *extra]
    assert main(args) == 0
    return json.loads(js.read_text())


def _reference(learner, family) -> list[float]:
    result = evaluate(learner, family, n_tasks=12, steps=0, shots=10, query=15, subset="held_out")
    return result.per_task[-1].tolist()


def test_descriptor_trained_chain_routed_from_data(runs, tmp_path, capsys):
    """``--routing data`` evaluates exactly what the loaded learner does once told to route from
    the support set; the JSON and the header say so; without the flag it stays descriptor-routed."""
    ckpt = runs["chain_descriptor"]
    data = _eval(ckpt, tmp_path / "d.json", "--routing", "data")
    assert data["routed_by"] == "data" and "routed: data (--routing)" in capsys.readouterr().out
    learner, _, family = load_checkpoint(ckpt)
    assert learner.eval_routing == "descriptor"
    as_trained = _reference(learner, family)
    learner.eval_routing = "data"
    expected = _reference(learner, family)
    torch.testing.assert_close(data["last_per_task"], expected, rtol=1e-5, atol=1e-7)
    plain = _eval(ckpt, tmp_path / "p.json")
    assert "routed_by" not in plain
    torch.testing.assert_close(plain["last_per_task"], as_trained, rtol=1e-5, atol=1e-7)
    assert plain["routing"]["joint_nmi"] == pytest.approx(1.0)  # the descriptor's own pairs
    assert plain["last_per_task"] != data["last_per_task"]


def test_routed_learner_evaluated_by_support_search(runs, tmp_path):
    """A router learner trained with argmax evaluation, evaluated with support-loss search."""
    ckpt = runs["routed"]
    data = _eval(ckpt, tmp_path / "s.json", "--routing", "search", "--steps", "2")
    learner, cfg, family = load_checkpoint(ckpt)
    learner.eval_routing = SupportSearchRouting()
    result = evaluate(learner, family, n_tasks=12, steps=2, shots=cfg.task.shots,
                      query=cfg.task.query, subset="held_out")  # fmt: skip
    torch.testing.assert_close(data["last_per_task"], result.per_task[-1].tolist(), rtol=1e-5,
                               atol=1e-7)  # fmt: skip


def test_inspect_draws_the_data_routed_graphs(runs, tmp_path):
    """``inspect --routing data`` routes each task from its support set; ``descriptor`` (as
    trained) routes each to its true pair: every slot matched on every task."""
    ckpt = runs["chain_descriptor"]
    purity = {}
    for routing in ("data", "descriptor"):
        out = tmp_path / routing
        assert (
            main(["inspect", ckpt, "--tasks", "16", "--out", str(out), "--routing", routing]) == 0
        )
        purity[routing] = json.loads((out / "routing.json").read_text())
        assert purity[routing]["routed_by"] == routing
        graph = json.loads((out / "graph_0.json").read_text())
        assert graph["routed_by"] == routing
        assert (
            graph["routing"]
            == {"data": "hard-from-data", "descriptor": "hard-by-descriptor"}[routing]
        )
    assert all(s["accuracy"] == 1.0 for s in purity["descriptor"]["slots"].values())
    assert purity["data"]["joint_nmi"] < 1.0


def test_inspect_graphs_name_the_policy_that_routed_them(runs, tmp_path):
    """A router learner's graphs say which evaluation policy chose them: its router's argmax as
    trained, support search under ``--routing search``."""
    labels = {}
    for routing in ("router", "search"):
        out = tmp_path / routing
        args = ["inspect", runs["routed"], "--tasks", "4", "--out", str(out), "--routing", routing]
        assert main(args) == 0
        labels[routing] = json.loads((out / "graph_0.json").read_text())["routing"]
    assert labels == {"router": "hard-learned", "search": "hard-support-search"}


@pytest.mark.parametrize(
    "run, value, match",
    [
        ("chain_descriptor", "search", "--routing search: expected one of data, descriptor"),
        ("routed", "data", "--routing data: expected one of router, search, topk"),
        ("sinusoid", "data", "--routing data: .* does not choose a composition per task"),
        ("rules", "router", "--routing router: .* routes by its composition rules"),
        ("anchors", "search", "--routing search: .*anchors"),
    ],
)
def test_a_routing_the_learner_cannot_use_is_one_line(runs, run, value, match, tmp_path, capsys):
    js, out = tmp_path / "e.json", tmp_path / "i"
    assert main(["eval", runs[run], "--tasks", "4", "--routing", value, "--json", str(js)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert __import__("re").search(match, err)
    assert main(["inspect", runs[run], "--out", str(out), "--routing", value]) == 2
    assert not js.exists() and not out.exists()


def test_descriptor_routing_needs_a_descriptor_trained_learner(tmp_path, capsys):
    """Trained from data, the candidates are in no primitive's order: descriptor routing would
    pair primitive i with an arbitrary candidate i, even on tasks that carry the descriptor."""
    run = tmp_path / "runs"
    args = ["train", str(ROOT / "configs" / "from_data_chain_annealed.yaml"), *SHORT,
            f"out_dir={run}", "name=chain", "algo.args.replicas=1", "algo.args.contexts=3",
            "algo.args.eval_contexts=5", "task.args.descriptor=onehot"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    ckpt = str(run / "chain" / "checkpoints" / "last.ckpt")
    assert main(["eval", ckpt, "--tasks", "4", "--routing", "descriptor"]) == 2
    err = capsys.readouterr().err
    assert "--routing descriptor:" in err and "trained routed from data" in err


def test_a_checkpoint_that_does_not_rebuild_is_not_blamed_on_the_routing(runs, tmp_path, capsys):
    """A checkpoint whose own config no longer builds, or whose stored graph it cannot read, fails
    under ``--routing`` as it does without it: the reason names the checkpoint, not the routing."""
    for edit in ("config", "graph"):  # a table size its config refuses; a graph it cannot read
        ckpt = torch.load(runs["chain_descriptor"], map_location="cpu", weights_only=False)
        if edit == "config":
            ckpt["metacompose"]["config"]["algo"]["args"]["knots"] = 1
        else:
            ckpt["metacompose"]["graph"]["replicas"] = "x"
        broken = tmp_path / f"broken_{edit}.ckpt"
        torch.save(ckpt, broken)
        for extra in ([], ["--routing", "data"]):
            assert main(["eval", str(broken), "--tasks", "4", *extra]) == 2
            err = capsys.readouterr().err.strip()
            assert "\n" not in err and "cannot rebuild the model" in err and "--routing" not in err
