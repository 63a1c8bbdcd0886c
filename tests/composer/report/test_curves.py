"""``metric_curves``: the seeded tasks, hence the numbers, do not depend on the evaluation batch."""

import torch

from metacompose.algorithms import InnerLoop, MetaLearner
from metacompose.models import mlp_graph
from metacompose.report.curves import SAMPLE_CHUNK, default_batch_size, metric_curves
from metacompose.tasks import SinusoidFamily
from metacompose.tasks.base import derive_seed


def test_batch_size_changes_speed_not_tasks():
    learner = MetaLearner(graph=mlp_graph(hidden=[8]), inner=InnerLoop(lr=0.05))
    fam = SinusoidFamily()
    kw = dict(n_tasks=SAMPLE_CHUNK + 7, shots=4, query=5, steps=2, seed=3)
    whole = metric_curves(learner, fam, **kw)
    assert whole.shape == (3, SAMPLE_CHUNK + 7) and whole.dtype == torch.float64
    for size in (1, 7, SAMPLE_CHUNK):
        torch.testing.assert_close(metric_curves(learner, fam, batch_size=size, **kw), whole,
                                   atol=1e-6, rtol=1e-5)  # fmt: skip
    # reference: the same stream drawn by hand, one task at a time through learner.evaluate
    g = torch.Generator().manual_seed(derive_seed(3, "test", "report", 4, 5))
    first = fam.sample(SAMPLE_CHUNK, shots=4, query=5, generator=g, split="test")
    second = fam.sample(7, shots=4, query=5, generator=g, split="test")
    ref = [learner.evaluate(b.slice(t, t + 1), steps=2) for b in (first, second)
           for t in range(b.num_tasks)]  # fmt: skip
    torch.testing.assert_close(whole, torch.cat(ref, 1).double(), atol=1e-6, rtol=1e-5)


def test_default_batch_size_bounds_input_values():
    g = torch.Generator().manual_seed(0)
    small = SinusoidFamily().sample(200, shots=10, query=10, generator=g, split="test")
    assert default_batch_size(small) == 200  # 20 values a task: all at once
    images = small.__class__(
        support_x=torch.zeros(30, 5, 1, 28, 28), support_y=torch.zeros(30, 5, dtype=torch.long),
        query_x=torch.zeros(30, 50, 1, 28, 28), query_y=torch.zeros(30, 50, dtype=torch.long),
    )  # fmt: skip
    assert default_batch_size(images) == 2**20 // (55 * 28 * 28) == 24
