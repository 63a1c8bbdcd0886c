"""NaN/Inf tasks are dropped (the update equals one on the good tasks alone), all-bad steps skipped."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch

from metacompose.algorithms import InnerLoop, MetaLearner
from metacompose.models import mlp_graph
from metacompose.tasks import SinusoidFamily, TaskBatch
from metacompose.training import (
    BadInputError,
    BadTaskWarning,
    MetaDataModule,
    MetaLearningModule,
    TaskStream,
    guarded_meta_step,
    select_tasks,
)

LR, STEPS, T = 0.05, 3, 8


class PoisonedSinusoid(SinusoidFamily):
    """Sinusoid tasks whose support targets are NaN (or +Inf) when the amplitude exceeds a bound."""

    def __init__(self, *, bound: float, value: float = float("nan")) -> None:
        super().__init__()
        self.bound, self.value = bound, value

    def sample(self, n_tasks, *, shots, query, generator, split="train") -> TaskBatch:
        batch = super().sample(n_tasks, shots=shots, query=query, generator=generator, split=split)
        bad = batch.info["amplitude"] > self.bound
        batch.support_y[bad] = self.value
        return batch


def make_learner(algorithm: str = "maml") -> MetaLearner:
    torch.manual_seed(0)
    graph = mlp_graph(in_features=1, hidden=[16, 16], out_features=1)
    return MetaLearner(graph=graph, algorithm=algorithm, inner=InnerLoop(lr=0.01, steps=2))


def fit(family, *, steps: int, max_bad_tasks: int | None = 1000) -> MetaLearningModule:
    module = MetaLearningModule(
        learner=make_learner(),
        optimizer=lambda params: torch.optim.SGD(params, lr=LR),
        max_bad_tasks=max_bad_tasks,
    )
    data = MetaDataModule(family=family, seed=3, meta_batch_size=T, shots=5, query=5, val_tasks=T)
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        log_every_n_steps=1,
    )
    with warnings.catch_warnings():  # a Lightning-internal deprecation, not ours
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
        trainer.fit(module, datamodule=data)
    return module


def reference(family, *, steps: int) -> dict[str, torch.Tensor]:
    """Plain SGD on the meta-objective of the good tasks only (amplitude <= bound), no Lightning."""
    learner = make_learner()
    stream = TaskStream(family=family, split="train", seed=3, batch_size=T, shots=5, query=5)
    for i in range(steps):
        batch = stream.meta_batch(i)
        good = (batch.info["amplitude"] <= family.bound).nonzero().view(-1)
        learner.zero_grad()
        if len(good):
            learner.meta_step(select_tasks(batch, good)).objective.backward()
            with torch.no_grad():
                for p in learner.parameters():
                    p -= LR * p.grad
    return dict(learner.state_dict())


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_bad_tasks_are_dropped_from_the_meta_update(value):
    family = PoisonedSinusoid(bound=3.5, value=value)
    stream = TaskStream(family=family, split="train", seed=3, batch_size=T, shots=5, query=5)
    n_bad = sum(int((stream.meta_batch(i).info["amplitude"] > 3.5).sum()) for i in range(STEPS))
    assert 0 < n_bad < STEPS * T  # the seed gives a mix of good and bad tasks
    with pytest.warns(BadTaskWarning, match="dropped"):
        module = fit(family, steps=STEPS)
    assert module.guard.bad_tasks == n_bad and module.guard.skipped_steps == 0
    want = reference(family, steps=STEPS)
    for key, value_ in module.learner.state_dict().items():
        assert torch.isfinite(value_).all(), key
        torch.testing.assert_close(value_, want[key], atol=1e-6, rtol=1e-5, msg=key)
    assert float(module.trainer.callback_metrics["train/bad_tasks"]) == n_bad


def test_all_bad_meta_batch_skips_the_step():
    family = PoisonedSinusoid(bound=-1.0)  # every task is bad
    before = {k: v.clone() for k, v in make_learner().state_dict().items()}
    with pytest.warns(BadTaskWarning, match="skipped the step"):
        module = fit(family, steps=2)
    assert module.guard.skipped_steps == 2 and module.guard.bad_tasks == 2 * T
    for key, value in module.learner.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_too_many_bad_tasks_stop_the_run():
    with pytest.warns(BadTaskWarning), pytest.raises(BadInputError, match="max_bad_tasks=10"):
        fit(PoisonedSinusoid(bound=-1.0), steps=5, max_bad_tasks=10)


@pytest.mark.parametrize("algorithm", ["maml", "reptile"])
def test_guarded_step_gradient_is_the_good_tasks_mean_times_fraction(algorithm):
    family = PoisonedSinusoid(bound=3.5)
    batch = TaskStream(
        family=family, split="train", seed=5, batch_size=T, shots=5, query=5
    ).meta_batch(0)
    good = (batch.info["amplitude"] <= 3.5).nonzero().view(-1)
    learner = make_learner(algorithm)
    step = guarded_meta_step(learner, batch)
    assert (step.good, step.tasks) == (len(good), T)
    got = torch.autograd.grad(step.objective, list(learner.parameters()))
    ref = make_learner(algorithm)
    want = torch.autograd.grad(
        ref.meta_step(select_tasks(batch, good)).objective, list(ref.parameters())
    )
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w * len(good) / T, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_grads_finite_against_every_element(dtype):
    """The fused check equals a brute-force walk over every gradient element, leaves the gradients'
    bits as they were, and ignores parameters without a gradient."""
    import math

    from metacompose.training.guard import grads_finite

    gen = torch.Generator().manual_seed(0)
    shapes = [(7, 3), (5,), (2, 2, 2), (1,)]
    for trial in range(40):
        params = [torch.nn.Parameter(torch.zeros(s, dtype=dtype)) for s in shapes]
        for p in params[: 1 + trial % len(shapes)]:
            p.grad = torch.randn(p.shape, generator=gen).to(dtype)
        with_grad = [p for p in params if p.grad is not None]
        if trial % 3:  # plant a NaN, +Inf or -Inf in one gradient element
            p = with_grad[int(torch.randint(len(with_grad), (1,), generator=gen))]
            i = int(torch.randint(p.grad.numel(), (1,), generator=gen))
            p.grad.view(-1)[i] = [float("nan"), float("inf"), -float("inf")][
                trial % 3 - 1 + trial % 2
            ]
        before = [p.grad.clone() for p in with_grad]
        want = all(math.isfinite(float(v)) for p in with_grad for v in p.grad.view(-1))
        assert grads_finite(params) is want
        for p, b in zip(with_grad, before, strict=True):
            assert torch.equal(p.grad.isnan(), b.isnan())
            assert torch.equal(torch.nan_to_num(p.grad), torch.nan_to_num(b))
    assert grads_finite([torch.nn.Parameter(torch.zeros(3))]) is True  # no gradient at all
    assert grads_finite([]) is True
