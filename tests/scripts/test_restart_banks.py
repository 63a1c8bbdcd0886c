"""``scripts/restart_banks.py``: block restarts of an annealed checkpoint's kept replica."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from annealed_runs import SMALL

from metacompose.cli.main import main
from metacompose.config import load_config
from metacompose.evaluate import load_checkpoint
from metacompose.training import train

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--restarts", "2", "--steps", "3", "--anneal", "2", "--fit-tasks", "10",
         "--agree-tasks", "12"]  # fmt: skip


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "restart_banks.py"), *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("restart_banks")
    cfg = load_config(ROOT / "configs" / "from_data_sums_annealed.yaml", [*SMALL, f"out_dir={out}"])
    return train(cfg).checkpoint


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_one_phase_keeps_the_other_bank_and_every_other_replica(trained, tmp_path):
    before, _, _ = load_checkpoint(trained)
    kept = before.kept
    source = digest(trained)
    out = tmp_path / "restarted.ckpt"
    done = run(str(trained), "--out", str(out), "--order", "f", *QUICK)
    assert done.returncode == 0, done.stderr[-2000:]
    assert digest(trained) == source  # the input is never touched
    lines = [line for line in done.stdout.splitlines() if line.startswith("restart phase 1 (f)")]
    assert len(lines) == 3 and sum("<- kept" in line for line in lines) == 1, done.stdout
    after, _, _ = load_checkpoint(out)
    assert after.kept == kept
    for r in range(3):
        for slot in ("f_banks", "g_banks"):
            a, b = getattr(before, slot)[r].state_dict(), getattr(after, slot)[r].state_dict()
            same = all(torch.equal(a[k], b[k]) for k in a)
            if r != kept or slot == "g_banks":  # the g bank was frozen in an f phase
                assert same, (r, slot)
    took_restart = "incumbent" not in next(line for line in lines if "<- kept" in line)
    f_before, f_after = before.f_banks[kept].state_dict(), after.f_banks[kept].state_dict()
    assert took_restart == (not all(torch.equal(f_before[k], f_after[k]) for k in f_before))


def test_same_seed_same_checkpoint(trained, tmp_path):
    outs = [tmp_path / f"r{i}.ckpt" for i in range(2)]
    for out in outs:
        done = run(str(trained), "--out", str(out), *QUICK)
        assert done.returncode == 0, done.stderr[-2000:]
    states = [load_checkpoint(out)[0].state_dict() for out in outs]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    out = tmp_path / "eval.json"
    assert (
        main(["eval", str(outs[0]), "--tasks", "8", "--subset", "held_out", "--json", str(out)])
        == 0
    )
    assert json.loads(out.read_text())["routing"]["tasks"] == 8
    # the other commands read it like any trained checkpoint
    assert main(["inspect", str(outs[0]), "--tasks", "6", "--out", str(tmp_path / "i")]) == 0
    assert (tmp_path / "i" / "routing.json").exists()
    spec = str(ROOT / "configs" / "bounds" / "compositional.yaml")
    assert main(["verify", str(outs[0]), "--spec", spec, "--tasks", "2", "--tier", "fast"]) in (
        0,
        1,
        3,
    )
    assert main(["report", str(outs[0]), "--out", str(tmp_path / "r"), "--tasks", "8"]) == 0


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--anneal", "9", "--steps", "3"], "--anneal 9: more than --steps 3"),
        (["--order", "fx"], "--order 'fx': a string of f, g, p (polish) and d (distil)"),
        (["--order", "p", "--polish-steps", "0"], "--polish-steps"),
        (["--order", "p", "--polish-lr", "0"], "--polish-lr"),
        (["--within", "0.5"], "--within 0.5: must be >= 1"),
        (["--order", "d", "--distil-tasks", "1"], "--distil-tasks 1: needs 2 or more"),
    ],
)
def test_bad_arguments_one_line_before_any_work(trained, tmp_path, extra, says):
    out = tmp_path / "never.ckpt"
    done = run(str(trained), "--out", str(out), *extra)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not out.exists()


def test_refuses_to_overwrite(trained, tmp_path):
    out = tmp_path / "exists.ckpt"
    out.write_bytes(b"keep me")
    for target in (out, trained):
        done = run(str(trained), "--out", str(target))
        assert done.returncode == 2 and "exists" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == b"keep me"


def test_refuses_a_learner_without_two_banks_trained_from_data(tmp_path):
    cfg = load_config(
        ROOT / "configs" / "from_data_sums_annealed.yaml",
        [*SMALL, f"out_dir={tmp_path}", "algo.args.candidates=[3]"],  # one shared bank
    )
    ckpt = train(cfg).checkpoint
    done = run(str(ckpt), "--out", str(tmp_path / "x.ckpt"))
    assert done.returncode == 2 and "two banks" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.ckpt").exists()
