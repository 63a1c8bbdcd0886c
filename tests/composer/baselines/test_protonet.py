"""ProtoNet logits against a hand-written float64 double loop; training step and evaluation."""

import torch

from metacompose.baselines.protonet import ProtoNet, prototype_logits
from metacompose.models import conv_graph
from metacompose.tasks import DigitsFamily


def reference_logits(support, labels, query, ways):
    """-||q - mean_{k: y_k = c} s_k||^2, one scalar at a time, in float64."""
    t, q = query.shape[:2]
    out = torch.zeros(t, q, ways, dtype=torch.float64)
    for i in range(t):
        for c in range(ways):
            members = [support[i, k].double() for k in range(support.shape[1]) if labels[i, k] == c]
            proto = sum(members) / len(members)
            for j in range(q):
                out[i, j, c] = -sum((query[i, j].double() - proto) ** 2)
    return out


def test_prototype_logits_match_reference():
    g = torch.Generator().manual_seed(1)
    support = torch.randn(3, 6, 4, generator=g)
    labels = torch.tensor([[0, 1, 2, 0, 1, 2], [2, 2, 1, 0, 0, 1], [1, 0, 2, 2, 0, 1]])
    query = torch.randn(3, 5, 4, generator=g)
    got = prototype_logits(support, labels, query, 3)
    torch.testing.assert_close(
        got.double(), reference_logits(support, labels, query, 3), atol=1e-5, rtol=1e-5
    )


def test_protonet_embeds_each_task_separately_and_trains():
    fam = DigitsFamily(ways=3, size=8)
    batch = fam.sample(
        2, shots=2, query=3, generator=torch.Generator().manual_seed(0), split="train"
    )
    body = conv_graph(image_size=8, n_way=3, filters=4, depth=2).node("body")
    net = ProtoNet(encoder=body, ways=3)
    # Per-task embedding: batch-norm statistics of one task's set, exactly as body(x_task).
    emb = net.embed(batch.support_x)
    torch.testing.assert_close(emb[1], body(batch.support_x[1]), atol=1e-5, rtol=1e-5)
    logits = net.logits(batch)
    ref = reference_logits(emb.detach(), batch.support_y, net.embed(batch.query_x).detach(), 3)
    torch.testing.assert_close(logits.detach().double(), ref, atol=1e-4, rtol=1e-4)
    step = net.meta_step(batch)
    step.objective.backward()
    assert step.query_loss.shape == (2,)
    assert all(p.grad is not None and p.grad.isfinite().all() for p in net.parameters())
    curve = net.evaluate(batch, steps=2)
    acc = (logits.argmax(-1) == batch.query_y).float().mean(1)
    assert curve.shape == (3, 2)
    torch.testing.assert_close(curve, acc.expand(3, 2))
