"""Block restarts as the last stage of ``train`` (``restart:``): the same checkpoint as
``scripts/restart_banks.py`` on the trained one, resumable phase by phase, refused in one line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from training_testing import REPO, final_state

from metacompose.cli.main import main
from metacompose.config import ConfigError, load_config
from metacompose.config.schema import RestartConfig as RestartPlan
from metacompose.training import TrainingInterrupted, restart_stage, train
from metacompose.training.restart_stage import RECORD
from metacompose.training.resume import RESTART_RECORD

CONFIG = REPO / "configs" / "from_data_sums_annealed.yaml"
SIZES = {  # seconds: two banks of 2 coarse tables, 2 replicas, 6 meta-iterations
    "algo.args.candidates": "[2,2]", "algo.args.knots": 12, "algo.args.contexts": 5,
    "algo.args.eval_contexts": 5, "algo.args.replicas": 2, "algo.args.anneal_steps": 4,
    "data.meta_batch_size": 8, "data.val_tasks": 8, "trainer.max_steps": 6,
    "trainer.val_check_interval": 3, "trainer.enable_progress_bar": "false",
}  # fmt: skip
SMALL = [f"{key}={value}" for key, value in SIZES.items()]
QUICK = ["restart.order=fg", "restart.restarts=2", "restart.steps=3", "restart.anneal=2",
         "restart.fit_tasks=10", "restart.agree_tasks=12"]  # fmt: skip
SCRIPT_QUICK = ["--restarts", "2", "--steps", "3", "--anneal", "2", "--fit-tasks", "10",
                "--agree-tasks", "12"]  # fmt: skip


def cfg_of(out: Path, name: str, *extra: str):
    return load_config(CONFIG, [*SMALL, f"out_dir={out}", f"name={name}", *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run with restarts, and the same run without them."""
    out = tmp_path_factory.mktemp("restart_stage")
    return {
        "plain": train(cfg_of(out, "plain")),
        "restarted": train(cfg_of(out, "restarted", *QUICK)),
        "out": out,
    }


def script_restarts(checkpoint: Path, out: Path, *extra: str) -> None:
    """``scripts/restart_banks.py`` with the stage's quick settings, ``checkpoint`` -> ``out``."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "restart_banks.py"), str(checkpoint),
         "--out", str(out), *SCRIPT_QUICK, *extra],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def same_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_stage_equals_the_script_on_the_trained_checkpoint(runs, tmp_path):
    plain, restarted = runs["plain"], runs["restarted"]
    script = tmp_path / "script.ckpt"
    script_restarts(plain.checkpoint, script)
    assert same_states(final_state(restarted.checkpoint), final_state(script))
    record = torch.load(restarted.checkpoint, weights_only=True)[RECORD]
    assert [ph["slot"] for ph in record["phases"]] == ["f", "g"]
    assert restarted.restarts == record
    # only the kept replica's banks (and amplitude limit) differ from the run without restarts
    before, after = final_state(plain.checkpoint), final_state(restarted.checkpoint)
    kept = record["kept"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    allowed = {k for k in before if k.startswith((f"learner.f_banks.{kept}.",
                                                  f"learner.g_banks.{kept}."))}  # fmt: skip
    assert changed - allowed <= {"learner.amplitude"}
    took = any(ph["kept"] > 0 for ph in record["phases"])
    assert bool(changed) == took
    a = torch.load(plain.checkpoint, weights_only=True)
    b = torch.load(restarted.checkpoint, weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    for i, s in a["optimizer_states"][0]["state"].items():  # the run's optimizer, as trained
        assert torch.equal(s["exp_avg"], b["optimizer_states"][0]["state"][i]["exp_avg"])


def test_stopped_in_the_second_phase_then_resumed_is_bit_identical(
    runs, tmp_path, monkeypatch, capsys
):
    calls = iter(range(10**6))

    @contextlib.contextmanager
    def stop_in_phase_two():  # phase 1's 3 steps pass; phase 2 stops before its first step
        yield lambda: signal.SIGINT if next(calls) >= 3 else 0

    monkeypatch.setattr(restart_stage, "stop_on_signal", stop_in_phase_two)
    cfg = cfg_of(tmp_path, "cut", *QUICK)
    with pytest.raises(TrainingInterrupted) as stopped:
        train(cfg)
    assert "SIGINT during block-restart phase 2 of 2" in str(stopped.value)
    assert stopped.value.exit_code == 130
    saved = torch.load(stopped.value.checkpoint, weights_only=True)
    assert [ph["slot"] for ph in saved[RECORD]["phases"]] == ["f"]  # phase 1 kept, 2 dropped
    monkeypatch.undo()
    longer = cfg_of(tmp_path, "cut", *QUICK, "trainer.max_steps=9")  # restarted banks: no training
    with pytest.raises(ConfigError, match=r"\(1 of 2 phases done\).*trainer\.max_steps=6$"):
        train(longer, resume=tmp_path / "cut")
    capsys.readouterr()
    resumed = train(cfg, resume=tmp_path / "cut")
    said = capsys.readouterr().out
    assert "restart phase 2 (g)" in said and "restart phase 1" not in said  # phase 1 not redone
    assert resumed.start_step == 6 and len(resumed.restarts["phases"]) == 2
    assert same_states(final_state(resumed.checkpoint), final_state(runs["restarted"].checkpoint))
    done = r"nothing left to do \(its block restarts are done too: start a new run"
    with pytest.raises(ConfigError, match=done):
        train(cfg, resume=tmp_path / "cut")
    with pytest.raises(ConfigError, match=r"\(2 of 2 phases done\).*start a new run"):
        train(longer, resume=tmp_path / "cut")


def test_a_signal_as_the_last_phase_is_scored_finishes_and_is_reported(runs, tmp_path,
                                                                       monkeypatch):  # fmt: skip
    calls = iter(range(10**6))

    @contextlib.contextmanager
    def signal_after_the_last_step():  # 2 phases x 3 steps pass; the 7th look is after the last
        yield lambda: signal.SIGTERM if next(calls) >= 6 else 0

    monkeypatch.setattr(restart_stage, "stop_on_signal", signal_after_the_last_step)
    late = train(cfg_of(tmp_path, "late", *QUICK))
    assert late.signal == signal.SIGTERM and len(late.restarts["phases"]) == 2
    assert same_states(final_state(late.checkpoint), final_state(runs["restarted"].checkpoint))


def test_a_polish_phase_stopped_then_resumed_ends_as_the_script_does(runs, tmp_path, monkeypatch,
                                                                    capsys):  # fmt: skip
    calls = iter(range(10**6))

    @contextlib.contextmanager
    def stop_in_the_polish():  # phases f and g pass (3 steps each); the polish stops at step 2
        yield lambda: signal.SIGINT if next(calls) >= 7 else 0

    monkeypatch.setattr(restart_stage, "stop_on_signal", stop_in_the_polish)
    polish = ["restart.order=fgp", "restart.polish_steps=3", "restart.polish_lr=0.02"]
    cfg = cfg_of(tmp_path, "pol", *QUICK, *polish)
    with pytest.raises(TrainingInterrupted, match="during block-restart phase 3 of 3"):
        train(cfg)
    monkeypatch.undo()
    capsys.readouterr()
    resumed = train(cfg, resume=tmp_path / "pol")
    said = capsys.readouterr().out
    assert "restart phase 3 (p): incumbent" in said and "restart phase 3 (p): polished" in said
    assert "restart phase 2" not in said
    assert [ph["slot"] for ph in resumed.restarts["phases"]] == ["f", "g", "p"]
    script = tmp_path / "script.ckpt"
    extra = ["--polish-steps", "3", "--polish-lr", "0.02"]
    script_restarts(runs["plain"].checkpoint, script, "--order", "fgp", *extra)
    assert same_states(final_state(resumed.checkpoint), final_state(script))
    polished = resumed.restarts["phases"][2]["kept"] == 1
    fg = final_state(runs["restarted"].checkpoint)  # the same run's f and g phases, no polish
    assert same_states(final_state(resumed.checkpoint), fg) is not polished
    # the polish alone, on the checkpoint restarted with fg: numbered after its phases
    after = tmp_path / "after.ckpt"
    script_restarts(runs["restarted"].checkpoint, after, "--order", "p", *extra)
    assert same_states(final_state(after), final_state(resumed.checkpoint))
    record = torch.load(after, weights_only=True)[RECORD]
    assert record == resumed.restarts and record["plan"]["order"] == "fgp"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "restart_banks.py"), str(runs["restarted"].checkpoint),
         "--out", str(tmp_path / "never.ckpt"), "--order", "p", "--seed", "1"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2 and not (tmp_path / "never.ckpt").exists()
    assert "--seed 1: the checkpoint's block restarts used 0" in done.stderr, done.stderr


def test_a_distil_phase_in_the_stage_is_the_script_after_fg(runs, tmp_path, capsys):
    capsys.readouterr()
    staged = train(cfg_of(tmp_path, "fgd", *QUICK, "restart.order=fgd", "restart.distil_tasks=40"))
    said = capsys.readouterr().out
    assert "restart phase 3 (d): incumbent" in said
    assert "restart phase 3 (d): distilled 1" in said and "restart phase 3 (d): distilled 2" in said
    assert "restart phase 3 (d): best distilled / incumbent, routed query " in said
    phases = staged.restarts["phases"]
    assert [ph["slot"] for ph in phases] == ["f", "g", "d"] and len(phases[2]["fits"]) == 3
    ratio, query = phases[2]["query_ratio"], phases[2]["query"]
    best = 1 + min(range(2), key=query[1:].__getitem__)
    assert phases[2]["kept"] == (best if ratio[0] + ratio[1] < 1 else 0)
    assert staged.restarts["plan"]["distil_tasks"] == 40
    after = tmp_path / "after.ckpt"  # the distil alone, on the checkpoint restarted with fg
    script_restarts(runs["restarted"].checkpoint, after, "--order", "d", "--distil-tasks", "40")
    assert same_states(final_state(after), final_state(staged.checkpoint))
    distilled = phases[2]["kept"] > 0
    fg = final_state(runs["restarted"].checkpoint)
    assert same_states(final_state(staged.checkpoint), fg) is not distilled


PLAN = RestartPlan(order="fg", restarts=4, steps=1000, anneal=800, within=1.5, fit_tasks=256,
                   agree_tasks=400, seed=0, polish_steps=600, polish_lr=0.003)  # fmt: skip


def record_of(plan: RestartPlan, slots: str) -> dict:
    phases = [{"slot": s, "fits": [0.1], "agreement": [1.0], "kept": 0} for s in slots]
    return {"plan": asdict(plan), "kept": 3, "phases": phases}


def test_phases_added_to_a_record_follow_it_with_its_settings():
    polish = replace(PLAN, order="p", steps=2000, anneal=1500, polish_steps=50)  # script defaults
    plan, done = restart_stage.continued(record_of(PLAN, "fg"), polish)
    assert done == 2 and plan.order == "fgp" and plan.polish_steps == 50
    assert (plan.steps, plan.anneal) == (1000, 800)  # the recorded phases' settings stay
    plan, done = restart_stage.continued(record_of(replace(PLAN, order="fgp"), "fgp"),
                                         replace(PLAN, order="g"))  # fmt: skip
    assert done == 3 and plan.order == "fgpg"


@pytest.mark.parametrize(
    ("record", "plan", "says"),
    [
        (["not", "a", "record"], PLAN, "record is damaged"),
        ({"plan": asdict(PLAN), "phases": ["junk"]}, PLAN, "record is damaged"),
        (record_of(replace(PLAN, order="fgp"), "f"), replace(PLAN, order="p"),
         "stopped after 1 of the 3 phases planned (fgp): finish them first"),
        (record_of(PLAN, "fg"), replace(PLAN, order="p", seed=1), "restart.seed 1: "),
        (record_of(PLAN, "fg"), replace(PLAN, order="p", fit_tasks=9), "restart.fit_tasks 9: "),
        (record_of(PLAN, "fg"), replace(PLAN, order="g", steps=2000),
         "restart.steps 2000: the checkpoint's block restarts used 1000"),
        (record_of(replace(PLAN, order="fgp"), "fgp"), replace(PLAN, order="p", polish_lr=0.1),
         "restart.polish_lr 0.1: "),
        (record_of(replace(PLAN, order="fgd"), "fgd"), replace(PLAN, order="d", distil_tasks=50),
         "restart.distil_tasks 50: the checkpoint's block restarts used 2000"),
        ({**record_of(replace(PLAN, order="fgd"), "fgd"),
          "plan": {k: v for k, v in asdict(replace(PLAN, order="fgd")).items()
                   if k != "distil_tasks"}},
         replace(PLAN, order="p"), "its distil phase predates restart.distil_tasks"),
    ],
)  # fmt: skip
def test_phases_are_not_added_to_a_record_they_would_not_continue(record, plan, says):
    with pytest.raises(ConfigError) as refused:
        restart_stage.continued(record, plan)
    assert says in str(refused.value)


def test_phases_done_counts_the_recorded_start_of_the_order_and_refuses_a_damaged_one():
    assert restart_stage.phases_done({}, PLAN) == 0
    assert restart_stage.phases_done({RECORD: record_of(PLAN, "f")}, PLAN) == 1
    assert restart_stage.phases_done({RECORD: record_of(PLAN, "g")}, PLAN) == 0  # not its start
    with pytest.raises(ConfigError, match="record is damaged"):
        restart_stage.phases_done({RECORD: {"plan": asdict(PLAN), "phases": ["junk"]}}, PLAN)


def test_in_double_precision_the_stage_runs_as_the_script_does(tmp_path):
    """The stage adapts in float32 whatever the run's precision, as the script's rebuilt learner
    does: the same checkpoint."""
    plain = train(cfg_of(tmp_path, "plain64", "trainer.precision=64-true"))
    staged = train(cfg_of(tmp_path, "staged64", "trainer.precision=64-true", *QUICK))
    script = tmp_path / "script64.ckpt"
    script_restarts(plain.checkpoint, script)
    assert same_states(final_state(staged.checkpoint), final_state(script))


def test_sigint_during_a_phase_exits_130_and_keeps_the_trained_checkpoint(tmp_path):
    args = [*SMALL, f"out_dir={tmp_path}", "name=sig", "restart.order=fg", "restart.steps=100000",
            "restart.anneal=10", "restart.fit_tasks=10", "restart.agree_tasks=12"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "metacompose.cli.main", "train", str(CONFIG), *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    last = tmp_path / "sig" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)  # the only checkpoint of this run is the one after its last step
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    line = [x for x in err.splitlines() if x.startswith("metacompose train:")]
    assert len(line) == 1 and "during block-restart phase 1 of 2" in line[0], err[-2000:]
    assert "--resume" in line[0] and "Traceback" not in err
    blob = torch.load(last, weights_only=True)
    assert RESTART_RECORD not in blob and blob["global_step"] == 6  # as trained, resumable


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["restart.order=fx"], "restart.order=fx: a string of f, g, p (polish) and d (distil)"),
        (["restart.order=fgp", "restart.polish_steps=0"],
         "restart.polish_steps=0: must be in 1.."),
        (["restart.order=p", "restart.polish_lr=-1"], "restart.polish_lr=-1"),
        (["restart.order=d", "restart.distil_tasks=1"], "restart.distil_tasks=1: must be in 2.."),
        (["restart.order=fg", "restart.anneal=9", "restart.steps=3"],
         "restart.anneal=9: more than restart.steps=3"),
        (["restart.order=f", "restart.restarts=0"], "restart.restarts=0: must be in 1..1024"),
        (["restart.order=f", "algo.args.candidates=[3]"],
         "restart.order=f: block restarts cannot run: they need two banks, trained from data"),
        (["restart.order=fg", "trainer.devices=auto"],
         "restart.order=fg: block restarts cannot run: they run in one process, and "
         "trainer.devices=auto/-1 may start several"),
    ],
)  # fmt: skip
def test_bad_restart_settings_one_line_before_any_folder(tmp_path, capsys, extra, says):
    code = main(["train", str(CONFIG), *SMALL, f"out_dir={tmp_path / 'runs'}", *extra])
    err = capsys.readouterr().err
    assert code == 2 and says in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_restarts_need_the_annealed_learner(tmp_path, capsys):
    config = REPO / "configs" / "sinusoid.yaml"
    code = main(["train", str(config), "restart.order=fg", f"out_dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert code == 2 and "restart.order=fg: needs algo.name annealed_sum (not maml)" in err, err
    assert not (tmp_path / "runs").exists()


def test_every_command_says_whether_the_banks_were_restarted(runs, tmp_path, capsys):
    """A reviewer scoring a checkpoint sees the record: one line in what eval, inspect, report
    and verify print, and in their JSON; report says its convergence curve precedes them."""
    record = runs["restarted"].restarts
    what = [
        "the incumbent" if ph["kept"] == 0 else f"restart {ph['kept']}" for ph in record["phases"]
    ]
    kept = ", ".join(f"phase {i + 1} ({ph['slot']}) kept {what[i]}"
                     for i, ph in enumerate(record["phases"]))  # fmt: skip
    for name in ("restarted", "plain"):
        run_dir, out = runs["out"] / name, tmp_path / name
        said = []
        for argv in (
            ["eval", str(run_dir), "--subset", "held_out", "--tasks", "8", "--json",
             str(out / "eval.json")],
            ["inspect", str(run_dir), "--tasks", "8", "--graphs", "0", "--out", str(out / "insp")],
            ["report", str(run_dir), "--tasks", "4", "--out", str(out / "report")],
            ["verify", str(run_dir), "--tasks", "2", "--json", str(out / "verify.json")],
        ):  # fmt: skip
            assert main(argv) in ((0, 1) if argv[0] == "verify" else (0,)), argv[0]
            said.append(capsys.readouterr().out)
        said.append((out / "report" / "report.md").read_text())
        kept_json = [json.loads((out / f).read_text())
                     for f in ("eval.json", "insp/routing.json", "verify.json")]  # fmt: skip
        kept_json.append(json.loads((out / "report" / "report.json").read_text())["checkpoints"][0])
        if name == "plain":
            assert not any("block restarts" in text for text in said)
            assert not any("restart_banks" in j for j in kept_json)
            continue
        line = f"block restarts on replica {record['kept']} (restart.seed 0, 2 restarts of 3 steps"
        for text in said:  # eval, inspect, report (what it prints lists files), verify, report.md
            assert f"{line} a phase): {kept}\n" in text or text is said[2], text
        assert "(the model before its block restarts)" in said[-1]
        task = kept_json[2]["tasks"][0]  # verify's tasks name their primitives as inspect does
        assert task["f"] in ("ramp", "step", "vee", "saw") and isinstance(task["g"], str)
        assert all(j["restart_banks"] == json.loads(json.dumps(record)) for j in kept_json)


def test_every_command_reads_the_checkpoint_once(runs, tmp_path, monkeypatch, capsys):
    """The banks a command scores and the restart record it prints come from one read of the
    file: a run saving ``last.ckpt`` between two reads would pair one checkpoint's banks with
    another's record."""
    ckpt = (runs["out"] / "restarted" / "checkpoints" / "last.ckpt").resolve()
    reads: list[Path] = []
    load = torch.load

    def counted(f, *args, **kwargs):
        reads.append(Path(f).resolve())
        return load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counted)
    out = tmp_path / "once"
    for argv in (
        ["eval", str(ckpt), "--tasks", "4"],
        ["inspect", str(ckpt), "--tasks", "4", "--graphs", "0", "--out", str(out / "insp")],
        ["report", str(ckpt), "--tasks", "4", "--out", str(out / "report")],
        ["verify", str(ckpt), "--tasks", "1"],
    ):  # fmt: skip
        reads.clear()
        assert main(argv) in ((0, 1) if argv[0] == "verify" else (0,)), argv[0]
        said = capsys.readouterr().out
        if argv[0] == "report":  # report prints the files it wrote; the line is in report.md
            said = (out / "report" / "report.md").read_text()
        assert "block restarts on replica" in said, argv[0]
        assert reads.count(ckpt) == 1, (argv[0], reads)


@pytest.mark.parametrize("bar", ["true", "false"])
def test_the_stage_draws_bars_only_when_the_run_does(tmp_path, capsys, monkeypatch, bar):
    monkeypatch.setenv("METACOMPOSE_PROGRESS", "1")  # a terminal, as far as the bars can tell
    train(cfg_of(tmp_path, f"bar_{bar}", *QUICK, f"trainer.enable_progress_bar={bar}"))
    captured = capsys.readouterr()
    assert "restart phase 2 (g): incumbent" in captured.out  # the phase lines print either way
    assert ("restart phase 1 (f)" in captured.err) == (bar == "true"), captured.err[-500:]
    assert os.environ["METACOMPOSE_PROGRESS"] == "1"  # restored after the stage
