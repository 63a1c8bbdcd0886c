"""Manual optimization in the LightningModule: the same numbers as a plain loop, clipping included,
and checkpoints written under Lightning's automatic optimization still resume at their step."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from training_testing import final_state

from metacompose.training import train
from metacompose.training.direct_step import lightning_path_needed
from metacompose.training.guard import guarded_meta_step
from metacompose.training.run import build_run

STEPS = 5


def plain_loop(cfg, *, clip: float | None) -> tuple[dict[str, torch.Tensor], list[float]]:
    """The reference: guarded meta-step, backward, optional norm clipping, optimizer step."""
    module, data, chunks = build_run(cfg)
    assert chunks == 1
    data.train_dataloader()
    stream = data.train_stream
    opt = module.configure_optimizers()
    params = [p for p in module.parameters() if p.requires_grad]
    norms = []
    for i in range(STEPS):
        opt.zero_grad()
        guarded_meta_step(module.learner, stream.item(i), step=i).objective.backward()
        norms.append(float(torch.linalg.vector_norm(torch.cat([p.grad.view(-1) for p in params]))))
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
    return {k: v.detach().clone() for k, v in module.state_dict().items()}, norms


@pytest.mark.parametrize("clip", [None, 0.05], ids=["no-clip", "clip"])
def test_train_takes_the_steps_of_a_plain_loop(tiny_cfg, clip):
    extra = [f"trainer.max_steps={STEPS}", "trainer.val_check_interval=100"]
    extra += [f"optim.grad_clip={clip}"] if clip is not None else []
    want, norms = plain_loop(tiny_cfg("ref", *extra), clip=clip)
    if clip is not None:
        assert min(norms) > 2 * clip  # clipping changes every step
    got = final_state(train(tiny_cfg("run", *extra)).checkpoint)
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-7, msg=key)


def test_clipping_changes_the_result(tiny_cfg):
    extra = [f"trainer.max_steps={STEPS}", "trainer.val_check_interval=100"]
    free = final_state(train(tiny_cfg("free", *extra)).checkpoint)
    clipped = final_state(train(tiny_cfg("clipped", *extra, "optim.grad_clip=0.05")).checkpoint)
    assert any(not torch.equal(free[k], clipped[k]) for k in free)


def test_checkpoint_of_automatic_optimization_resumes_at_its_step(tmp_path, tiny_cfg):
    """A checkpoint whose step count sits in the automatic loop's counter (as written before
    manual optimization) resumes at that step, not at 0."""
    extra = ["trainer.max_steps=6", "trainer.val_check_interval=100"]
    cut = train(tiny_cfg("cut", *["trainer.max_steps=3", *extra[1:]]))
    state = torch.load(cut.checkpoint, weights_only=True)
    loops = state["loops"]["fit_loop"]
    manual = loops["epoch_loop.manual_optimization.optim_step_progress"]
    auto = loops["epoch_loop.automatic_optimization.optim_progress"]
    assert manual["total"]["completed"] == 3 and state["global_step"] == 3
    for counter in (auto["optimizer"]["step"]["total"], auto["optimizer"]["step"]["current"]):
        counter["ready"] = counter["completed"] = 3
    for counter in (manual["total"], manual["current"]):
        counter["ready"] = counter["completed"] = 0
    torch.save(state, cut.checkpoint)

    resumed = train(tiny_cfg("cut", *extra), resume=tmp_path / "cut")
    full = train(tiny_cfg("full", *extra))
    assert torch.load(resumed.checkpoint, weights_only=True)["global_step"] == 6
    got, want = final_state(resumed.checkpoint), final_state(full.checkpoint)
    for key in want:
        assert torch.equal(got[key], want[key]), key


class CountsBackward(L.Callback):
    """A callback with a backward hook: the run must take Lightning's path and call it."""

    def __init__(self) -> None:
        self.calls = 0

    def on_after_backward(self, trainer, pl_module) -> None:
        self.calls += 1


@pytest.mark.parametrize("clip", [None, 0.05], ids=["no-clip", "clip"])
def test_direct_step_is_the_run_of_lightnings_path(tiny_cfg, clip):
    """Without a callback on the backward / optimizer-step hooks, the module skips Lightning's
    wrappers (direct_step.py): weights, optimizer state, step counters and the log are those of the
    run through ``manual_backward`` and ``LightningOptimizer.step``."""
    extra = ["trainer.max_steps=7", "trainer.val_check_interval=3", "trainer.log_every_n_steps=2"]
    extra += [f"optim.grad_clip={clip}"] if clip is not None else []
    direct = train(tiny_cfg("direct", *extra))
    hook = CountsBackward()
    wrapped = train(tiny_cfg("wrapped", *extra), callbacks=[hook])
    assert hook.calls == 7  # Lightning's path ran, with its hooks
    a = torch.load(direct.checkpoint, weights_only=True)
    b = torch.load(wrapped.checkpoint, weights_only=True)
    assert a["global_step"] == b["global_step"] == 7
    assert a["loops"] == b["loops"]
    for key, value in b["state_dict"].items():
        assert torch.equal(a["state_dict"][key], value), key
    for i, state in b["optimizer_states"][0]["state"].items():
        for name, value in state.items():
            assert torch.equal(a["optimizer_states"][0]["state"][i][name], value), name
    assert (direct.run_dir / "metrics.csv").read_text() == (
        wrapped.run_dir / "metrics.csv"
    ).read_text()


def test_which_runs_take_lightnings_path():
    plain = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    assert not lightning_path_needed(plain)
    hooked = L.Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[CountsBackward()])
    assert lightning_path_needed(hooked)
    bf16 = L.Trainer(accelerator="cpu", devices=1, logger=False, precision="bf16-mixed")
    assert lightning_path_needed(bf16)
    profiled = L.Trainer(accelerator="cpu", devices=1, logger=False, profiler="simple")
    assert lightning_path_needed(profiled)


def test_the_path_is_chosen_per_fit_and_sees_the_modules_own_hooks(tiny_cfg):
    """A second fit of the same module with a backward-hook callback takes Lightning's path (the
    choice is made per fit), and so does a module that overrides a backward hook itself."""
    from metacompose.training.module import MetaLearningModule

    def fit(module, data, callbacks):
        trainer = L.Trainer(
            accelerator="cpu", devices=1, max_steps=3, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
            callbacks=callbacks,
        )  # fmt: skip
        with warnings.catch_warnings():  # Lightning's own notes, filtered by train() itself
            warnings.simplefilter("ignore")
            trainer.fit(module, datamodule=data)

    module, data, _ = build_run(tiny_cfg("refit", "trainer.max_steps=3"))
    fit(module, data, [])
    assert module._lightning_path is False
    hook = CountsBackward()
    fit(module, data, [hook])
    assert hook.calls == 3 and module._lightning_path is True

    class OwnHook(MetaLearningModule):
        calls = 0

        def on_after_backward(self) -> None:
            OwnHook.calls += 1

    module, data, _ = build_run(tiny_cfg("own", "trainer.max_steps=3"))
    module.__class__ = OwnHook
    fit(module, data, [])
    assert OwnHook.calls == 3 and module._lightning_path is True
