"""The in-context transformer: order-free in the support set, queries independent, batched."""

import pytest
import torch

from metacompose.algorithms.context_learner import ContextLearner
from metacompose.algorithms.incontext import incontext_learner, support_only_mask
from metacompose.models import conv_graph, mlp_graph
from metacompose.tasks import SinusoidFamily


def regression_learner(likelihood="gaussian") -> ContextLearner:
    torch.manual_seed(0)
    enc = mlp_graph(in_features=1, hidden=[16], out_features=16)
    return incontext_learner(
        encoder=enc, targets=1, classification=False, likelihood=likelihood, width=16, heads=2,
        layers=2, ff=32,
    ).double()  # fmt: skip


def batch(t=3, k=7, q=5):
    g = torch.Generator().manual_seed(1)
    return SinusoidFamily().sample(t, shots=k, query=q, generator=g).to("cpu", torch.float64)


def test_mask_lets_every_token_see_the_support_only():
    m = support_only_mask(2, 4)
    assert m.tolist() == [[True, True, False, False]] * 4


def test_permuting_the_support_set_leaves_predictions_unchanged():
    learner, b = regression_learner(), batch()
    pred = learner.predict(b.support_x, b.support_y, b.query_x)
    perm = torch.randperm(b.support_x.shape[1], generator=torch.Generator().manual_seed(2))
    permuted = learner.predict(b.support_x[:, perm], b.support_y[:, perm], b.query_x)
    torch.testing.assert_close(permuted, pred, atol=1e-12, rtol=0)


def test_changing_one_query_leaves_the_others_unchanged():
    learner, b = regression_learner(), batch()
    pred = learner.predict(b.support_x, b.support_y, b.query_x)
    qx = b.query_x.clone()
    qx[:, 2] += 3.0
    changed = learner.predict(b.support_x, b.support_y, qx)
    keep = [0, 1, 3, 4]
    torch.testing.assert_close(changed[:, keep], pred[:, keep], atol=1e-12, rtol=0)
    assert (changed[:, 2] - pred[:, 2]).abs().max() > 1e-3


def test_tasks_are_predicted_independently_in_one_batched_call():
    learner, b = regression_learner(), batch()
    pred = learner.predict(b.support_x, b.support_y, b.query_x)
    one = learner.predict(b.support_x[1:2], b.support_y[1:2], b.query_x[1:2])
    torch.testing.assert_close(one[0], pred[1], atol=1e-12, rtol=0)


@pytest.mark.parametrize("likelihood", ["mse", "gaussian"])
def test_meta_training_lowers_the_query_loss(likelihood):
    learner = regression_learner(likelihood).float()
    fam, g = SinusoidFamily(), torch.Generator().manual_seed(0)
    test = fam.sample(50, shots=10, query=10, generator=g, split="test")
    before = learner.evaluate(test).mean()
    opt = torch.optim.Adam(learner.parameters(), lr=3e-3)
    for step in range(150):
        opt.zero_grad()
        learner.meta_step(
            fam.sample(16, shots=10, query=10, generator=g), step=step
        ).objective.backward()
        opt.step()
    after = learner.evaluate(test)
    assert after.shape == (1, 50)
    assert after.mean() < 0.7 * before


def test_min_shots_draws_the_support_size_from_the_meta_iteration():
    learner = regression_learner()
    learner.min_shots = 2
    seen = set()
    for step in range(30):
        b = batch(k=10)
        learner.adapt = lambda x, y, **kw: (
            seen.add(x.shape[1]),
            ({"support_x": x, "support_y": y}, {}),
        )[1]
        learner.meta_step(b, step=step)
    assert min(seen) >= 2 and max(seen) <= 10 and len(seen) > 3


def test_classification_reads_one_hot_labels_through_a_conv_encoder():
    torch.manual_seed(0)
    enc = conv_graph(in_channels=1, image_size=8, n_way=16, filters=4, depth=2, norm="group")
    learner = incontext_learner(encoder=enc, targets=3, classification=True, width=16, heads=2,
                                layers=1, ff=16)  # fmt: skip
    sx, sy = torch.randn(2, 6, 1, 8, 8), torch.tensor([[0, 1, 2, 0, 1, 2]] * 2)
    qx = torch.randn(2, 4, 1, 8, 8)
    assert learner.predict(sx, sy, qx).shape == (2, 4, 3)
    fast, frozen = learner.adapt(sx, sy)
    acc = learner.query_loss(fast, frozen, qx, torch.zeros(2, 4, dtype=torch.long), metric=True)
    assert acc.shape == (2,) and ((acc >= 0) & (acc <= 1)).all()


def test_export_is_refused_in_one_line():
    with pytest.raises(ValueError, match="no adapted weights"):
        regression_learner().export_tasks(batch())
