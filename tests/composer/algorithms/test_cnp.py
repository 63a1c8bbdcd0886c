"""The conditional neural process: order-free mean pooling, independent queries, learns."""

import torch

from metacompose.algorithms.cnp import cnp_learner
from metacompose.models import mlp_graph
from metacompose.tasks import SinusoidFamily


def learner():
    torch.manual_seed(0)
    enc = mlp_graph(in_features=1, hidden=[16], out_features=16)
    return cnp_learner(encoder=enc, targets=1, classification=False, hidden=16, layers=2)


def test_permutation_invariant_and_queries_independent():
    cnp = learner().double()
    g = torch.Generator().manual_seed(1)
    b = SinusoidFamily().sample(3, shots=6, query=4, generator=g).to("cpu", torch.float64)
    pred = cnp.predict(b.support_x, b.support_y, b.query_x)
    perm = torch.tensor([5, 3, 1, 0, 2, 4])
    torch.testing.assert_close(
        cnp.predict(b.support_x[:, perm], b.support_y[:, perm], b.query_x), pred, atol=1e-12, rtol=0
    )
    qx = b.query_x.clone()
    qx[:, 0] -= 2.0
    torch.testing.assert_close(
        cnp.predict(b.support_x, b.support_y, qx)[:, 1:], pred[:, 1:], atol=1e-12, rtol=0
    )


def test_meta_training_lowers_the_query_loss():
    cnp = learner()
    fam, g = SinusoidFamily(), torch.Generator().manual_seed(0)
    test = fam.sample(50, shots=10, query=10, generator=g, split="test")
    before = cnp.evaluate(test).mean()
    opt = torch.optim.Adam(cnp.parameters(), lr=3e-3)
    for step in range(300):
        opt.zero_grad()
        cnp.meta_step(
            fam.sample(16, shots=10, query=10, generator=g), step=step
        ).objective.backward()
        opt.step()
    assert cnp.evaluate(test).mean() < 0.9 * before
