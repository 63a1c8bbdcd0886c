"""Several meta-iterations per Lightning batch (trainer.steps_per_call) change nothing but speed:
the same weights, optimizer state and metrics.csv, bit for bit, including across a SIGKILL and a
resume with another count; bad counts fail in one line before anything runs."""

from __future__ import annotations

import signal

import pytest
import torch
from training_testing import CONFIG, final_state, run_python, tiny_overrides

from metacompose.config import ConfigError, load_config
from metacompose.training import train
from metacompose.training.run import build_run
from metacompose.training.steps_per_call import (
    AUTO_CAP,
    AUTO_MAX,
    BATCH_SECONDS,
    auto_limit,
    probe_step_seconds,
    resolve_steps_per_call,
)

# Cadences that 4 divides: validation, checkpoints and a log row every 4 meta-iterations.
EVERY4 = [
    "trainer.val_check_interval=4",
    "trainer.checkpoint_every_n_steps=4",
    "trainer.log_every_n_steps=4",
]


def optimizer_state(ckpt):
    return torch.load(ckpt, weights_only=True)["optimizer_states"][0]["state"]


def assert_same_run(a, b) -> None:
    wa, wb = final_state(a.checkpoint), final_state(b.checkpoint)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    oa, ob = optimizer_state(a.checkpoint), optimizer_state(b.checkpoint)
    for i in oa:
        assert torch.equal(oa[i]["exp_avg"], ob[i]["exp_avg"])
        assert torch.equal(oa[i]["exp_avg_sq"], ob[i]["exp_avg_sq"])
    assert (a.run_dir / "metrics.csv").read_text() == (b.run_dir / "metrics.csv").read_text()


@pytest.mark.parametrize("per_call", [2, 4])
def test_steps_per_call_gives_the_run_of_one_step_per_batch(tiny_cfg, per_call):
    extra = ["trainer.max_steps=12", *EVERY4]
    one = train(tiny_cfg("one", *extra, "trainer.steps_per_call=1"))
    many = train(tiny_cfg(f"many{per_call}", *extra, f"trainer.steps_per_call={per_call}"))
    assert_same_run(one, many)
    rows = (many.run_dir / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    steps = sorted({int(r.split(",")[header.index("step")]) for r in rows[1:]})
    assert steps == [3, 7, 11]  # a row every 4 meta-iterations, labelled as with one per batch


def test_auto_takes_several_steps_for_vectors(tiny_cfg, monkeypatch):
    import metacompose.training.run as run

    monkeypatch.setattr(run, "probe_step_seconds", lambda learner, batch: 0.004)  # a 4 ms step
    cfg = tiny_cfg("auto", "trainer.max_steps=16", *EVERY4)
    module, data, chunks = build_run(cfg)
    assert (chunks, module.steps_per_call, data.steps_per_call) == (1, 4, 4)
    cfg = tiny_cfg("auto", "trainer.max_steps=2000", "trainer.val_check_interval=2000",
                   "trainer.checkpoint_every_n_steps=2000", "trainer.log_every_n_steps=100")  # fmt: skip
    assert build_run(cfg)[0].steps_per_call == 25  # the largest divisor of 100 up to 0.1 s / 4 ms
    auto = tiny_cfg("accel", "trainer.max_steps=2000", "trainer.val_check_interval=2000",
                    "trainer.checkpoint_every_n_steps=2000", "trainer.log_every_n_steps=100",
                    "trainer.accelerator=auto")  # fmt: skip
    assert build_run(auto)[0].steps_per_call == 5  # not a CPU run: no probe, at most 8


@pytest.mark.parametrize(
    "seconds, want", [(0.003, 25), (0.0045, 20), (0.02, 5), (0.04, 2), (0.3, 1)]
)
def test_auto_follows_the_probed_step_time(tiny_cfg, monkeypatch, seconds, want):
    import metacompose.training.run as run

    seen = []

    def probe(learner, batch):
        seen.append(batch.num_tasks)
        return seconds

    monkeypatch.setattr(run, "probe_step_seconds", probe)
    cfg = tiny_cfg("probe", "trainer.max_steps=2000", "trainer.val_check_interval=2000",
                   "trainer.checkpoint_every_n_steps=2000", "trainer.log_every_n_steps=100")  # fmt: skip
    assert build_run(cfg)[0].steps_per_call == want
    assert seen == [cfg.data.meta_batch_size]  # probed once, on a whole meta-batch
    seen.clear()
    fixed = tiny_cfg("fixed", "trainer.max_steps=16", *EVERY4, "trainer.steps_per_call=4")
    assert build_run(fixed)[0].steps_per_call == 4 and not seen  # an explicit count: no probe


def test_auto_limit_against_its_definition():
    for ms in [0.01, 0.5, 1, 3.9, 4, 4.1, 5, 12.5, 33, 50, 99, 100, 101, 1e4]:
        limit = auto_limit(ms / 1000)
        assert 1 <= limit <= AUTO_CAP
        assert limit == AUTO_CAP or limit == 1 or limit * ms <= 1000 * BATCH_SECONDS + 1e-9
        assert limit == 1 or (limit + 1) * ms > 1000 * BATCH_SECONDS or limit == AUTO_CAP
    assert auto_limit(None) == AUTO_MAX


def test_the_probe_leaves_the_learner_and_the_random_state_alone(tiny_cfg):
    import random

    import numpy as np

    from metacompose.tasks import SinusoidFamily

    learner = build_run(tiny_cfg("probe_state", "trainer.max_steps=4"))[0].learner
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    batch = SinusoidFamily().sample(4, shots=5, query=5, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123), np.random.seed(5), random.seed(7)
    want = (torch.rand(3), np.random.rand(2), random.random())
    torch.manual_seed(123), np.random.seed(5), random.seed(7)

    class Noisy(torch.nn.Module):  # a learner whose meta-step draws from every random source
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def meta_step(self, batch, *, step):
            torch.rand(1), np.random.rand(), random.random()
            return self.inner.meta_step(batch, step=step)

    seconds = probe_step_seconds(Noisy(learner), batch)
    assert 0 < seconds < 60
    got = (torch.rand(3), np.random.rand(2), random.random())
    assert torch.equal(got[0], want[0]) and (got[1] == want[1]).all() and got[2] == want[2]
    assert all(p.grad is None for p in learner.parameters())
    for key, value in learner.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_auto_rule():
    cad = {"max_steps": 70000, "val_check_interval": 2000, "log_every_n_steps": 100}
    assert resolve_steps_per_call("auto", cadences=cad, chunks=1, image=False) == 5
    cad["log_every_n_steps"] = 200
    assert resolve_steps_per_call("auto", cadences=cad, chunks=1, image=False) == AUTO_MAX
    assert resolve_steps_per_call("auto", cadences=cad, chunks=1, image=True) == 1
    assert resolve_steps_per_call("auto", cadences=cad, chunks=2, image=False) == 1
    # a run resumed at step 1003 (a SIGINT) can only take one step per batch
    assert (
        resolve_steps_per_call("auto", cadences=cad, chunks=1, image=False, resume_step=1003) == 1
    )
    assert (
        resolve_steps_per_call("auto", cadences=cad, chunks=1, image=False, resume_step=1004) == 4
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["trainer.steps_per_call=3"],
            r"trainer.steps_per_call=3: must divide trainer.max_steps=8",
        ),
        (["trainer.steps_per_call=4", "data.task_chunk_size=4"], r"needs one micro-batch"),
    ],
)
def test_a_count_that_does_not_fit_fails_in_one_line(tiny_cfg, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        train(tiny_cfg("bad", "trainer.max_steps=8", *EVERY4, *extra))
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("value", ["0", "fast", "2.5", "-4"])
def test_bad_values_fail_on_load(tmp_path, value):
    with pytest.raises(ConfigError, match=rf"trainer.steps_per_call={value}: expected auto or an"):
        load_config(CONFIG, tiny_overrides(tmp_path, "x", f"trainer.steps_per_call={value}"))


KILLED_RUN = """
import os, signal, sys
import lightning as L
import torch
from metacompose.config import load_config
from metacompose.training import train

class KillAt(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 12:
            os.kill(os.getpid(), signal.SIGKILL)

torch.set_num_threads(1)
train(load_config(sys.argv[1], sys.argv[2:]), callbacks=[KillAt()])
"""


def test_sigkill_then_resume_with_another_count_is_bit_identical(tmp_path, tiny_cfg):
    """Killed at step 12 with 4 meta-iterations per batch (last checkpoint: step 8), resumed with 2
    per batch and a higher max_steps: the run of one meta-iteration per batch, bit for bit."""
    extra = [*EVERY4, "trainer.checkpoint_every_n_steps=8"]
    full = train(tiny_cfg("full", "trainer.max_steps=20", *extra, "trainer.steps_per_call=1"))
    cut = tiny_overrides(
        tmp_path, "cut", "trainer.max_steps=16", *extra, "trainer.steps_per_call=4"
    )
    killed = run_python(["-c", KILLED_RUN, str(CONFIG), *cut])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    state = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 8
    assert state["metacompose_resume"]["steps_per_call"] == 4
    resumed = train(
        tiny_cfg("cut", "trainer.max_steps=20", *extra, "trainer.steps_per_call=2"),
        resume=tmp_path / "cut",
    )
    assert_same_run(full, resumed)


@pytest.mark.parametrize("before, after", [(1, 1), (1, 4), (4, 2)])
def test_a_finished_run_goes_on_as_if_never_stopped(tiny_cfg, before, after):
    """A run that reached its max_steps, resumed with a higher one (and any count per batch), ends
    as the run that never stopped: the same weights and the same metrics.csv (before the fix, its
    later log rows came one batch late and the last one was lost)."""
    extra = [*EVERY4, "trainer.checkpoint_every_n_steps=8"]
    full = train(tiny_cfg("full", "trainer.max_steps=20", *extra, "trainer.steps_per_call=1"))
    first = train(
        tiny_cfg("run", "trainer.max_steps=8", *extra, f"trainer.steps_per_call={before}")
    )
    resumed = train(
        tiny_cfg("run", "trainer.max_steps=20", *extra, f"trainer.steps_per_call={after}"),
        resume=first.run_dir,
    )
    assert_same_run(full, resumed)
