"""``metacompose verify``: exit codes 0 / 1 / 2 / 3 on crafted specs and checkpoints; violated
counterexamples reproduce on the torch graph through the learner's own inner loop."""

import json
from pathlib import Path

import pytest
import torch

from metacompose.cli.main import main
from metacompose.evaluate import load_checkpoint
from metacompose.symbolic import parse_vnn_witness
from metacompose.tasks.base import derive_seed


def _spec(tmp_path: Path, text: str) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


def _verify(ckpt, spec, tmp_path, *extra):
    out = tmp_path / "r.json"
    md = tmp_path / "r.md"
    code = main(
        [
            "verify",
            str(ckpt),
            "--spec",
            spec,
            "--tasks",
            "3",
            "--json",
            str(out),
            "--report",
            str(md),
            *extra,
        ]
    )
    return code, (json.loads(out.read_text()) if out.exists() else None), md


LOOSE = """
domain: {box: {lower: [-5.0], upper: [5.0]}}
trust_regions: [{module: body, norm: l2, bound: 100.0}, {module: head, norm: linf, bound: 10.0}]
deviation: {max_abs: [100.0]}
output_range: {lower: [-1000.0], upper: [1000.0]}
lipschitz: [{norm: l2, bound: 100000.0}]
finite: true
step_size: {step_size: 0.01}
"""


def test_loose_spec_is_proved_exit_0(tiny_checkpoint, tmp_path):
    code, rep, md = _verify(tiny_checkpoint, _spec(tmp_path, LOOSE), tmp_path, "--tier", "fast")
    assert code == 0 and rep["status"] == "proved"
    assert len(rep["tasks"]) == 3
    for task in rep["tasks"]:
        by = {c["claim"]: c for c in task["claims"]}
        assert by["step_size"]["status"] == "estimate"  # never proved
        assert all(c["status"] == "proved" for k, c in by.items() if k != "step_size")
        assert by["deviation[0]"]["bound"] <= 100.0 and by["deviation[0]"]["facts"]
    assert "overall: proved" in md.read_text()


def test_tight_spec_is_violated_exit_1_and_reproduces(tiny_checkpoint, tmp_path):
    spec = _spec(
        tmp_path, "domain: {box: {lower: [-5.0], upper: [5.0]}}\ndeviation: {max_abs: 1e-4}\n"
    )
    wit = tmp_path / "wit"
    code, rep, _ = _verify(
        tiny_checkpoint,
        spec,
        tmp_path,
        "--tier",
        "refine",
        "--timeout",
        "2",
        "--witness-dir",
        str(wit),
    )
    assert code == 1 and rep["status"] == "violated"
    # Independent replay: the learner's own inner loop and graph (no IR) on the same tasks.
    learner, cfg, family = load_checkpoint(tiny_checkpoint)
    g = torch.Generator().manual_seed(derive_seed(0, "test", "verify"))
    batch = family.sample(3, shots=cfg.task.shots, query=cfg.task.query, generator=g, split="test")
    with torch.no_grad():
        fast, _ = learner.adapt(batch.support_x, batch.support_y, steps=cfg.algo.eval_inner_steps)
    meta = dict(learner.graph.named_parameters())
    n_violated = 0
    for t, task in enumerate(rep["tasks"]):
        claim = {c["claim"]: c for c in task["claims"]}["deviation[0]"]
        if claim["status"] != "violated":
            continue
        n_violated += 1
        x = torch.tensor([claim["x"]], dtype=torch.float64)
        assert -5.0 <= float(x) <= 5.0
        p64 = {k: v.double() for k, v in meta.items()}
        a64 = {**p64, **{k: v[t].double() for k, v in fast.items()}}
        with torch.no_grad():
            dev = (learner.graph.apply_params(a64, x) - learner.graph.apply_params(p64, x)).abs()
        assert float(dev) > 1e-4
        assert float(dev) == pytest.approx(claim["observed"], rel=1e-9)
        xs, ys = parse_vnn_witness((wit / f"task{t}_deviation_0.txt").read_text())
        assert xs == claim["x"] and abs(ys[0]) == pytest.approx(float(dev), rel=1e-9)
    assert n_violated >= 1


def test_undecided_claim_exits_3(tiny_checkpoint, tmp_path):
    # The fast tier never attacks a Lipschitz claim: an unprovable bound stays unknown.
    spec = _spec(
        tmp_path,
        "domain: {box: {lower: [-5.0], upper: [5.0]}}\nlipschitz: [{norm: l2, bound: 1.0e-6}]\n",
    )
    code, rep, _ = _verify(tiny_checkpoint, spec, tmp_path, "--tier", "fast")
    assert code == 3 and rep["status"] == "unknown"
    assert all(t["claims"][0]["reason"] for t in rep["tasks"])


def test_invalid_spec_exits_2_with_one_line(tiny_checkpoint, tmp_path, capsys):
    spec = _spec(
        tmp_path, "domain: {box: {lower: [-5.0], upper: [5.0]}}\ndeviation: {max_abs: [-1.0]}\n"
    )
    code, rep, _ = _verify(tiny_checkpoint, spec, tmp_path)
    err = capsys.readouterr().err.strip()
    assert code == 2 and rep is None
    assert len(err.splitlines()) == 1 and "deviation.max_abs[0]" in err and "spec.yaml" in err


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_hostile_checkpoint_exits_2_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "payload_ran"
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "evil": _Payload(str(marker))}, bad)
    code, rep, _ = _verify(bad, _spec(tmp_path, LOOSE), tmp_path)
    err = capsys.readouterr().err.strip()
    assert code == 2 and rep is None and not marker.exists()
    assert len(err.splitlines()) == 1 and str(bad) in err


def test_self_test_passes(capsys):
    assert main(["verify", "--self-test", "--networks", "3", "--timeout", "1"]) == 0
    assert "PASS" in capsys.readouterr().out


def test_linf_ball_domain_is_centred_on_query_inputs(tiny_checkpoint, tmp_path):
    spec = _spec(tmp_path, "domain: {linf_ball: {radius: 0.05}}\ndeviation: {max_abs: [1.0e-5]}\n")
    code, rep, _ = _verify(tiny_checkpoint, spec, tmp_path, "--tier", "refine", "--timeout", "2")
    assert code == 1
    _, cfg, family = load_checkpoint(tiny_checkpoint)
    g = torch.Generator().manual_seed(derive_seed(0, "test", "verify"))
    batch = family.sample(3, shots=cfg.task.shots, query=cfg.task.query, generator=g, split="test")
    for t, task in enumerate(rep["tasks"]):
        claim = task["claims"][0]
        if claim["status"] == "violated":
            x = torch.tensor(claim["x"], dtype=torch.float64)
            dist = (batch.query_x[t].double() - x).abs().amax(-1).min()
            assert float(dist) <= 0.05 + 1e-12


def test_self_test_with_a_checkpoint_is_refused(tiny_checkpoint, capsys):
    """``verify --self-test CKPT`` ran the self-test and ignored the checkpoint."""
    assert main(["verify", "--self-test", str(tiny_checkpoint)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--self-test checks random networks" in err
