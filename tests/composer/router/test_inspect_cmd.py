"""``metacompose inspect`` on a (briefly trained) routed checkpoint and on a plain one; the
compositional configs build, and the monolithic baseline matches the routed learner's size."""

import csv
import json

import numpy as np
import pytest
import torch

from metacompose.build import build_family, build_learner
from metacompose.cli.main import main
from metacompose.config import ConfigError, load_config
from metacompose.graph import ModuleGraph
from metacompose.router import RoutedMetaLearner
from metacompose.router.metrics import matched_order

TINY = [
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.checkpoint_every_n_steps=2",
    "data.meta_batch_size=4",
    "data.val_tasks=8",
    "algo.eval_inner_steps=2",
]


def _train(config, tmp_path, name, extra=()):
    from metacompose.training import train

    cfg = load_config(config, [*TINY, f"out_dir={tmp_path}", f"name={name}", *extra])
    return train(cfg, config_name=name).checkpoint


def test_configs_build_and_baseline_size_matches():
    sizes = {}
    for name in ("compositional", "compositional_uniform", "compositional_maml"):
        cfg = load_config(f"configs/{name}.yaml")
        learner = build_learner(cfg, build_family(cfg.task))
        sizes[name] = sum(p.numel() for p in learner.parameters())
        assert isinstance(learner, RoutedMetaLearner) == (name != "compositional_maml")
    assert abs(sizes["compositional_maml"] / sizes["compositional"] - 1) <= 0.10
    assert abs(sizes["compositional_uniform"] / sizes["compositional"] - 1) <= 0.10


def test_bad_template_in_config_names_the_key(tmp_path):
    cfg = load_config(
        "configs/compositional.yaml", ["router.template.nodes.outer.args.in_features=5"]
    )
    with pytest.raises(ConfigError, match=r"router.template: edge inner -> outer: type mismatch"):
        build_learner(cfg)


def test_inspect_routed_checkpoint(tmp_path, capsys):
    ckpt = _train("configs/compositional.yaml", tmp_path, "routed")
    out = tmp_path / "inspect"
    assert main(["inspect", str(ckpt), "--tasks", "16", "--graphs", "2", "--out", str(out)]) == 0
    for i in range(2):
        report = json.loads((out / f"graph_{i}.json").read_text())
        assert ModuleGraph.from_json_dict(report["graph"]).to_json_dict() == report["graph"]
        for node in report["nodes"]:
            assert {
                "module",
                "type",
                "in_space",
                "out_space",
                "num_parameters",
                "routing_prob",
                "modulation_norm",
                "weight_change_norm",
            } <= set(node)
        assert [e["space"] for e in report["edges"]] == [{"kind": "vec", "shape": [8]}]
        assert (out / f"graph_{i}.dot").read_text().startswith("digraph")
        assert (out / f"graph_{i}.png").stat().st_size > 1000
    assert not (out / "graph_2.json").exists()
    with open(out / "usage.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and sum(int(r["tasks"]) for r in rows) == 2 * 16
    assert (out / "usage_heatmap.png").stat().st_size > 1000
    # the heat map's rows and columns follow the Hungarian matching of the routing it reports
    purity = json.loads((out / "routing.json").read_text())
    assert set(purity["slots"]) == {"inner", "outer"} and purity["tasks"] == 16
    factors = {"f": ("sine", "ramp", "bump", "step"), "g": ("linear", "square", "relu", "cos")}
    assert len(purity["heatmap"]) == 4
    for panel in purity["heatmap"]:
        slot, f = panel["slot"], panel["factor"]
        counts = np.array(
            [[int(r[f"{f}={v}"]) for r in rows if r["slot"] == slot] for v in factors[f]]
        )  # (values, candidates) from usage.csv
        assert (panel["rows"], panel["columns"], panel["accuracy"]) == matched_order(counts)
        if purity["slots"][slot]["factor"] == f:
            assert purity["slots"][slot]["accuracy"] == panel["accuracy"]
    assert main(["eval", str(ckpt), "--tasks", "8"]) == 0


def test_eval_subset_and_routing_purity_in_json(tmp_path, capsys):
    """`eval --subset held_out` draws only held-out (f, g) pairs and scores the router's hard
    choices on them (NMI per slot and joint, accuracy after the Hungarian matching)."""
    from metacompose.evaluate import evaluate, load_checkpoint, meta_test_batches
    from metacompose.router.metrics import routing_purity

    ckpt = _train("configs/compositional.yaml", tmp_path, "routed")
    out = tmp_path / "held.json"
    assert (
        main(["eval", str(ckpt), "--tasks", "12", "--subset", "held_out", "--json", str(out)]) == 0
    )
    data = json.loads(out.read_text())
    assert data["subset"] == "held_out" and data["n_tasks"] == 12
    routing = data["routing"]
    assert routing["tasks"] == 12 and set(routing["slots"]) == {"inner", "outer"}
    for slot, factor in (("inner", "f"), ("outer", "g")):
        r = routing["slots"][slot]
        assert r["factor"] == factor and 0 <= r["nmi"] <= 1 and 0 < r["accuracy"] <= 1
    printed = capsys.readouterr().out
    assert "(held_out)" in printed and "matched acc" in printed and "joint NMI" in printed
    # the same numbers from the held-out tasks themselves
    learner, _, family = load_checkpoint(ckpt)
    res = evaluate(learner, family, n_tasks=12, steps=1, seed=0, subset="held_out")
    assert res.routing == routing
    (batch,) = meta_test_batches(family, n_tasks=12, shots=10, query=10, subset="held_out")
    assert int(batch.info["held_out"].sum()) == 12
    with torch.no_grad():
        ch = {s: c.tolist() for s, c in learner.choices(batch).items()}
    truth = {f: batch.info[f].tolist() for f in family.factors}
    assert routing_purity(ch, truth, family.factors, {"inner": 4, "outer": 4}) == routing
    # a subset the family does not have: one line, exit 2
    assert main(["eval", str(ckpt), "--tasks", "4", "--subset", "unseen"]) == 2
    assert "has subsets seen, held_out, all" in capsys.readouterr().err


def test_inspect_plain_checkpoint(tmp_path, capsys):
    ckpt = _train("configs/sinusoid.yaml", tmp_path, "plain")
    out = tmp_path / "inspect"
    assert main(["inspect", str(ckpt), "--tasks", "4", "--out", str(out)]) == 0
    report = json.loads((out / "graph_0.json").read_text())
    assert [n["name"] for n in report["nodes"]] == ["body", "head"]
    assert all("routing_prob" not in n for n in report["nodes"])
    assert report["nodes"][1]["weight_change_norm"] > 0
    assert not (out / "graph_1.json").exists() and not (out / "usage.csv").exists()
    # eval: no routing purity for a plain learner; --subset needs a family with subsets
    js = tmp_path / "plain.json"
    assert main(["eval", str(ckpt), "--tasks", "4", "--json", str(js)]) == 0
    assert "routing" not in json.loads(js.read_text())
    assert main(["eval", str(ckpt), "--tasks", "4", "--subset", "held_out"]) == 2
    assert "family 'sinusoid' declares no subsets" in capsys.readouterr().err
    torch.testing.assert_close(
        torch.tensor(report["graph"]["nodes"][0]["num_parameters"]),
        torch.tensor(40 + 40 + 40 * 40 + 40),
    )


def test_program_given_configs_build_train_and_route_by_the_descriptor(tmp_path):
    """The descriptor configs: equal sizes within 10%, and a briefly trained program-given
    checkpoint routes every task (seen or held out) to candidate f / candidate g."""
    from metacompose.evaluate import load_checkpoint

    sizes = {}
    names = ("program", "uniform_context", "maml_context", "program_sin", "maml_sin")
    duo = ("program_sin_duo", "maml_sin_duo", "uniform_sin_duo")
    for name in (*names, "program_sin_solo", "maml_sin_solo", *duo):
        cfg = load_config(f"configs/compositional_identifiable_{name}.yaml")
        sizes[name] = sum(p.numel() for p in build_learner(cfg).parameters())
    assert abs(sizes["maml_context"] / sizes["program"] - 1) <= 0.10
    assert abs(sizes["uniform_context"] / sizes["program"] - 1) <= 0.10
    assert abs(sizes["maml_sin"] / sizes["program_sin"] - 1) <= 0.10
    assert abs(sizes["maml_sin_solo"] / sizes["program_sin_solo"] - 1) <= 0.10
    assert abs(sizes["maml_sin_duo"] / sizes["program_sin_duo"] - 1) <= 0.10
    assert abs(sizes["uniform_sin_duo"] / sizes["program_sin_duo"] - 1) <= 0.10
    ckpt = _train("configs/compositional_identifiable_program.yaml", tmp_path, "program")
    learner, cfg, family = load_checkpoint(ckpt)
    b = family.sample(
        32, shots=10, query=10, generator=torch.Generator().manual_seed(0), split="test",
        subset="all",
    )  # fmt: skip
    choices = learner.choices(b)
    assert torch.equal(choices["inner"], b.info["f"])
    assert torch.equal(choices["outer"], b.info["g"])
    assert bool(b.info["held_out"].any())


def test_anchored_sine_config_round_trips_and_inspects(tmp_path):
    """The periodic, 1-wide, anchored config: its anchors survive the checkpoint (same
    evaluation after reloading), and `inspect` reports the 1-wide interface."""
    from metacompose.evaluate import load_checkpoint

    ckpt = _train("configs/compositional_identifiable_program_sin.yaml", tmp_path, "sin")
    learner, _, family = load_checkpoint(ckpt)
    assert len(list(learner.anchors.parameters())) > 0 and learner.anchors.rounds == 4
    b = family.sample(
        8, shots=10, query=10, generator=torch.Generator().manual_seed(0), split="test",
        subset="all",
    )  # fmt: skip
    again, _, _ = load_checkpoint(ckpt)
    torch.testing.assert_close(learner.evaluate(b), again.evaluate(b), rtol=0, atol=0)
    out = tmp_path / "inspect"
    assert main(["inspect", str(ckpt), "--tasks", "8", "--graphs", "1", "--out", str(out)]) == 0
    report = json.loads((out / "graph_0.json").read_text())
    assert [e["space"] for e in report["edges"]] == [{"kind": "vec", "shape": [1]}]


def test_anchors_are_seeded_by_the_config_not_by_the_global_rng():
    cfg = load_config("configs/compositional_identifiable_program_sin.yaml")
    torch.manual_seed(1)
    a = build_learner(cfg)
    torch.manual_seed(2)
    b = build_learner(cfg)
    other = build_learner(load_config("configs/compositional_identifiable_program_sin.yaml",
                                      ["seed=1"]))  # fmt: skip
    anchors = {m: dict(x.anchors.named_parameters()) for m, x in (("a", a), ("b", b), ("o", other))}
    assert len(anchors["a"]) == 8  # FiLM gamma and beta of two layers in each of two slots
    for k in anchors["a"]:
        assert torch.equal(anchors["a"][k], anchors["b"][k])
    assert not all(torch.equal(anchors["a"][k], anchors["o"][k]) for k in anchors["a"])


def test_solo_config_routes_solo_tasks_to_the_identity_and_inspects(tmp_path):
    """Solo tasks (inner primitive alone) go to the parameter-free Identity outer candidate,
    which then leaves the inner module's code unchanged; `inspect` handles the Identity node."""
    from metacompose.evaluate import load_checkpoint

    ckpt = _train("configs/compositional_identifiable_program_sin_solo.yaml", tmp_path, "solo")
    learner, _, family = load_checkpoint(ckpt)
    b = family.sample(64, shots=10, query=10, generator=torch.Generator().manual_seed(0))
    solo = b.info["g"] == len(family.outer)
    assert 0 < int(solo.sum()) < 64
    picks = learner.choices(b)
    assert torch.equal(picks["outer"] == 4, solo) and torch.equal(picks["inner"], b.info["f"])
    out = tmp_path / "inspect"
    assert main(["inspect", str(ckpt), "--tasks", "8", "--graphs", "1", "--out", str(out)]) == 0
    assert (out / "usage.csv").exists()


def test_duo_config_routes_both_kinds_of_solo_task_to_an_identity(tmp_path):
    """Outer-solo tasks (outer primitive alone on [-1, 1]) go to the Identity *inner* candidate,
    inner-solo tasks to the Identity outer one; held-out pairs to the modules of f and g."""
    from metacompose.evaluate import load_checkpoint

    ckpt = _train("configs/compositional_identifiable_program_sin_duo.yaml", tmp_path, "duo")
    learner, _, family = load_checkpoint(ckpt)
    b = family.sample(64, shots=10, query=10, generator=torch.Generator().manual_seed(0))
    alone, solo = b.info["f"] == len(family.inner), b.info["g"] == len(family.outer)
    assert 0 < int(alone.sum()) < 64 and 0 < int(solo.sum()) < 64
    picks = learner.choices(b)
    assert torch.equal(picks["inner"] == 4, alone) and torch.equal(picks["outer"] == 4, solo)
    held = family.sample(
        16, shots=10, query=10, generator=torch.Generator().manual_seed(1), split="test",
        subset="held_out",
    )  # fmt: skip
    picks = learner.choices(held)
    assert torch.equal(picks["inner"], held.info["f"]) and torch.equal(
        picks["outer"], held.info["g"]
    )
    out = tmp_path / "inspect"
    assert main(["inspect", str(ckpt), "--tasks", "8", "--graphs", "1", "--out", str(out)]) == 0
    assert (out / "usage.csv").exists()


def test_graph_files_by_default_stop_at_the_cap(tmp_path, monkeypatch):
    """``--tasks 1000000`` wrote three files per task; by default graph files stop at
    ``GRAPHS_DEFAULT`` tasks (3 here), and ``--graphs N`` still asks for N."""
    from metacompose.cli import inspect_cmd

    monkeypatch.setattr(inspect_cmd, "GRAPHS_DEFAULT", 3)
    ckpt = _train("configs/compositional.yaml", tmp_path, "routed")
    for flags, want in (([], 3), (["--graphs", "5"], 5)):
        out = tmp_path / f"inspect{want}"
        assert main(["inspect", str(ckpt), "--tasks", "6", *flags, "--out", str(out)]) == 0
        assert len(list(out.glob("graph_*.json"))) == want
