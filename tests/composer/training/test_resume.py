"""Exact resume: a run SIGKILLed mid-training and resumed ends bit-identical to an uninterrupted run."""

from __future__ import annotations

import signal
import textwrap

import pytest
import torch
from training_testing import CONFIG, final_state, run_python, tiny_overrides

from metacompose.training import train

STEPS, KILL_AT = 10, 8  # checkpoints every 3 steps: the last one before the kill is at step 6

KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    import lightning as L
    import torch
    from metacompose.config import load_config
    from metacompose.training import train

    class KillAt(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == {kill_at}:
                os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no final checkpoint

    torch.set_num_threads(1)
    train(load_config(sys.argv[1], sys.argv[2:]), callbacks=[KillAt()])
    """
)


def test_sigkill_then_resume_is_bit_identical(tmp_path, tiny_cfg):
    extra = [f"trainer.max_steps={STEPS}", "trainer.val_check_interval=4"]
    full = train(tiny_cfg("full", *extra))

    code = KILLED_RUN.format(kill_at=KILL_AT)
    killed = run_python(["-c", code, str(CONFIG), *tiny_overrides(tmp_path, "cut", *extra)])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ckpt = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    assert state["global_step"] == 6  # the last checkpoint before the kill, not a clean stop
    # Lightning had prefetched batch 7; the saved stream position counts consumed batches only.
    assert state["MetaDataModule"]["consumed"] == 6

    resumed = train(tiny_cfg("cut", *extra), resume=tmp_path / "cut")
    assert resumed.run_dir == tmp_path / "cut"
    got, want = final_state(resumed.checkpoint), final_state(full.checkpoint)
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key
    a = torch.load(full.checkpoint, weights_only=True)["optimizer_states"][0]["state"]
    b = torch.load(resumed.checkpoint, weights_only=True)["optimizer_states"][0]["state"]
    for i in a:
        assert torch.equal(a[i]["exp_avg_sq"], b[i]["exp_avg_sq"])
    # metrics.csv continues where the checkpoint was: identical to the uninterrupted log.
    assert (full.run_dir / "metrics.csv").read_text() == (
        resumed.run_dir / "metrics.csv"
    ).read_text()


ANNEALED = CONFIG.parent / "from_data_sums_annealed.yaml"
ANNEALED_SMALL = [
    "algo.args.candidates=[2,2]", "algo.args.knots=16", "algo.args.contexts=5",
    "algo.args.eval_contexts=5", "algo.args.replicas=2", "algo.args.anneal_steps=8",
    "data.meta_batch_size=8", "data.val_tasks=8", "trainer.val_check_interval=4",
    "trainer.checkpoint_every_n_steps=3", "trainer.log_every_n_steps=2",
    "trainer.enable_progress_bar=false", "trainer.deterministic=true",
    f"trainer.max_steps={STEPS}",
]  # fmt: skip


@pytest.mark.parametrize("extra", [[], ["algo.args.balance_steps=9"]], ids=["plain", "balanced"])
def test_sigkill_then_resume_is_bit_identical_for_the_annealed_learner(tmp_path, extra):
    """The data-routed learner's temperature follows the step, and its running fit and amplitude
    limit (which pick the kept replica and bound evaluation) are buffers: all survive kill -9.
    With the balanced E-step, its fade (by step 9) spans the kill at 8 and the resume from 6."""
    from metacompose.config import load_config

    overrides = [*ANNEALED_SMALL, *extra]

    def cfg(name):
        return load_config(ANNEALED, [*overrides, f"out_dir={tmp_path}", f"name={name}"])

    full = train(cfg("full"))
    code = KILLED_RUN.format(kill_at=KILL_AT)
    args = [*overrides, f"out_dir={tmp_path}", "name=cut"]
    killed = run_python(["-c", code, str(ANNEALED), *args])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt")["global_step"] == 6
    resumed = train(cfg("cut"), resume=tmp_path / "cut")
    got, want = final_state(resumed.checkpoint), final_state(full.checkpoint)
    assert got.keys() == want.keys() and {"fit", "amplitude"} <= {k.split(".")[-1] for k in want}
    for key in want:
        assert torch.equal(got[key], want[key]), key
    assert torch.isfinite(want[next(k for k in want if k.endswith("amplitude"))]).all()
    assert (full.run_dir / "metrics.csv").read_text() == (
        resumed.run_dir / "metrics.csv"
    ).read_text()


def test_a_run_from_before_a_config_key_existed_resumes(tmp_path, tiny_cfg):
    """A key added to the schema since a run was made (here ``restart:``) is not in its stored
    config: at its default it is no difference; set otherwise, it is one (named)."""
    from metacompose.config import ConfigError

    first = train(tiny_cfg("old", "trainer.max_steps=3"))
    blob = torch.load(first.checkpoint, weights_only=True)
    del blob["metacompose"]["config"]["restart"]
    torch.save(blob, first.checkpoint)
    config = first.run_dir / "config.yaml"
    config.write_text(config.read_text().split("restart:")[0])  # the last section
    assert "restart" not in config.read_text() and "verify:" in config.read_text()
    with pytest.raises(ConfigError, match=r"restart\.seed: 0 -> 5"):
        train(tiny_cfg("old", "trainer.max_steps=6", "restart.seed=5"), resume=first.run_dir)
    resumed = train(tiny_cfg("old", "trainer.max_steps=6"), resume=first.run_dir)
    assert resumed.start_step == 3
    assert torch.load(resumed.checkpoint, weights_only=True)["global_step"] == 6
