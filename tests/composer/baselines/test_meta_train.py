"""The bench's plain meta-training loop is guarded like ``metacompose train``: a NaN task cannot
poison the weights; the update equals Adam on the good tasks alone."""

import torch

from metacompose.algorithms import InnerLoop, MetaLearner
from metacompose.baselines.meta_train import meta_train
from metacompose.models import mlp_graph
from metacompose.tasks import SinusoidFamily, TaskBatch, derive_seed
from metacompose.training import select_tasks

T, STEPS = 6, 4


class PoisonedSinusoid(SinusoidFamily):
    """Support targets are NaN for tasks whose amplitude exceeds ``bound``."""

    def __init__(self, *, bound: float) -> None:
        super().__init__()
        self.bound = bound

    def sample(self, n_tasks, *, shots, query, generator, split="train") -> TaskBatch:
        batch = super().sample(n_tasks, shots=shots, query=query, generator=generator, split=split)
        batch.support_y[batch.info["amplitude"] > self.bound] = float("nan")
        return batch


def make_learner() -> MetaLearner:
    torch.manual_seed(0)
    graph = mlp_graph(in_features=1, hidden=[16], out_features=1)
    return MetaLearner(graph=graph, algorithm="maml", inner=InnerLoop(lr=0.01, steps=1))


def test_nan_tasks_are_dropped_and_the_update_is_adam_on_the_good_tasks():
    family = PoisonedSinusoid(bound=3.0)
    learner = make_learner()
    r = meta_train(learner, family, iterations=STEPS, meta_batch_size=T, shots=5, query=5,
                   lr=0.01, seed=7, grad_clip=1.0)  # fmt: skip
    ref = make_learner()
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    n_bad = 0
    for i in range(STEPS):
        g = torch.Generator().manual_seed(derive_seed(7, "train", i))
        batch = family.sample(T, shots=5, query=5, generator=g, split="train")
        good = (batch.info["amplitude"] <= 3.0).nonzero().view(-1)
        n_bad += T - len(good)
        opt.zero_grad()
        ref.meta_step(select_tasks(batch, good)).objective.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()
    assert 0 < n_bad < STEPS * T and r.bad_tasks == n_bad and r.skipped_steps == 0
    for (k, a), b in zip(learner.state_dict().items(), ref.state_dict().values()):
        assert torch.isfinite(a).all(), k
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)
    assert all(torch.isfinite(torch.tensor(r.losses)))


def test_a_step_without_good_tasks_is_skipped():
    learner = make_learner()
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    r = meta_train(learner, PoisonedSinusoid(bound=-1.0), iterations=3, meta_batch_size=T,
                   shots=5, query=5)  # fmt: skip
    assert (r.iterations, r.skipped_steps, r.bad_tasks) == (3, 3, 3 * T)
    for k, v in learner.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_a_bar_counts_the_meta_iterations_on_stderr_only(capsys, monkeypatch):
    kw = {"iterations": 3, "meta_batch_size": 2, "shots": 5, "query": 5, "seed": 1}
    monkeypatch.setenv("METACOMPOSE_PROGRESS", "1")
    shown = meta_train(make_learner(), SinusoidFamily(), **kw, desc="meta-train maml")
    out, err = capsys.readouterr()
    assert "meta-train maml" in err and "/3 " in err and out == ""
    monkeypatch.setenv("METACOMPOSE_PROGRESS", "0")
    plain = meta_train(make_learner(), SinusoidFamily(), **kw)
    assert capsys.readouterr().err == ""
    assert shown.losses == plain.losses and shown.iterations == plain.iterations == 3
