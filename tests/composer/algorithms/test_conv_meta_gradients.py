"""Conv-net meta-gradients of every inner-loop path against a hand-unrolled float64 reference.

The reference writes the conv network out with plain NCHW ops (conv, batch norm by its formula,
ReLU then max-pool: the textbook order) and unrolls each task's inner loop with
``torch.autograd.grad(create_graph=...)``; no functional_call, vmap, torch.func or channels-last.
"""

import pytest
import torch
import torch.nn.functional as F

from metacompose.algorithms import InnerLoop, MetaLearner
from metacompose.algorithms.inner_loop import use_vmap
from metacompose.models import conv_graph
from metacompose.tasks import TaskBatch

T, WAYS, SHOTS, QUERY, STEPS, LR = 3, 3, 2, 3, 2, 0.3
SIZE, FILTERS, DEPTH = 8, 4, 2


def net(p, x):
    """The conv graph by hand: DEPTH x (conv, batch norm, ReLU, 2x2 max-pool), then a linear head."""
    h = x
    for i in range(DEPTH):
        h = F.conv2d(h, p[f"body.layers.{4 * i}.weight"], p[f"body.layers.{4 * i}.bias"], padding=1)
        mean = h.mean(dim=(0, 2, 3), keepdim=True)
        var = ((h - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        h = (h - mean) / torch.sqrt(var + 1e-5)
        h = h * p[f"body.layers.{4 * i + 1}.weight"].view(1, -1, 1, 1)
        h = h + p[f"body.layers.{4 * i + 1}.bias"].view(1, -1, 1, 1)
        h = F.max_pool2d(torch.relu(h), 2)
    return h.flatten(1) @ p["head.linear.weight"].T + p["head.linear.bias"]


def reference_meta_grads(meta, batch, *, first_order, adapt_keys, lrs=None):
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in meta.items()}
    lr_leaves = {k: v.detach().clone().requires_grad_(True) for k, v in (lrs or {}).items()}
    total = 0.0
    for t in range(batch.num_tasks):
        fast = dict(leaves)
        for s in range(STEPS):
            loss = F.cross_entropy(net(fast, batch.support_x[t]), batch.support_y[t])
            grads = torch.autograd.grad(
                loss, [fast[k] for k in adapt_keys], create_graph=not first_order
            )
            for k, g in zip(adapt_keys, grads):
                lr = lr_leaves.get(f"{k}.step{s}", lr_leaves.get(k, LR))  # per step, or per key
                fast[k] = fast[k] - lr * (g.detach() if first_order else g)
        total = total + F.cross_entropy(net(fast, batch.query_x[t]), batch.query_y[t])
    wrt = list(leaves.values()) + list(lr_leaves.values())
    grads = torch.autograd.grad(total / batch.num_tasks, wrt, allow_unused=True)
    keys = list(leaves) + [f"lr:{k}" for k in lr_leaves]
    return {k: torch.zeros_like(w) if g is None else g for k, g, w in zip(keys, grads, wrt)}


def conv_batch() -> TaskBatch:
    """T tasks of WAYS-way SHOTS-shot SIZE x SIZE float64 images (fixed seed)."""
    g = torch.Generator().manual_seed(5)
    labels = torch.arange(WAYS)
    return TaskBatch(
        support_x=torch.randn(T, WAYS * SHOTS, 1, SIZE, SIZE, generator=g, dtype=torch.float64),
        support_y=labels.repeat_interleave(SHOTS).expand(T, -1).contiguous(),
        query_x=torch.randn(T, WAYS * QUERY, 1, SIZE, SIZE, generator=g, dtype=torch.float64),
        query_y=labels.repeat_interleave(QUERY).expand(T, -1).contiguous(),
    )


@pytest.fixture
def batch():
    return conv_batch()


def make(algorithm, vectorize, **kw):
    torch.manual_seed(3)
    graph = conv_graph(image_size=SIZE, n_way=WAYS, filters=FILTERS, depth=DEPTH).double()
    inner = InnerLoop(lr=LR, steps=STEPS, vectorize=vectorize)
    learner = MetaLearner(
        graph=graph, algorithm=algorithm, loss="cross_entropy", inner=inner, **kw
    ).double()
    if algorithm == "metasgd" or kw.get("per_step_lr"):  # distinct step sizes: non-trivial grads
        with torch.no_grad():
            for i, p in enumerate(learner.step_sizes.values()):
                p.mul_(1 + 0.1 * i)
    return learner


def learner_meta_grads(learner, batch):
    learner.zero_grad()
    learner.meta_step(batch).objective.backward()
    out = {k: p.grad.clone() for k, p in learner.graph.named_parameters()}
    if learner.algorithm == "metasgd" or learner.per_step_lr:
        out.update({f"lr:{k.replace('__', '.')}": p.grad for k, p in learner.step_sizes.items()})
    return out


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "anil", "metasgd"])
@pytest.mark.parametrize("vectorize", [True, False, "auto"])
def test_every_path_matches_the_hand_unrolled_reference(algorithm, vectorize, batch):
    learner = make(algorithm, vectorize)
    meta = {k: v.detach() for k, v in learner.graph.named_parameters()}
    lrs = None
    if algorithm == "metasgd":
        lrs = {k: learner.step_sizes[k.replace(".", "__")].detach() for k in learner.adapt_keys}
    ref = reference_meta_grads(
        meta, batch, first_order=learner.first_order, adapt_keys=learner.adapt_keys, lrs=lrs
    )
    got = learner_meta_grads(learner, batch)
    assert set(ref) == set(got)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-10, atol=1e-10, msg=k)
    assert max(ref[k].abs().max() for k in ref) > 1e-3, "degenerate test: all gradients ~zero"


def test_auto_loops_over_images_on_cpu_and_vmaps_vectors():
    assert not use_vmap("auto", torch.zeros(2, 3, 1, 8, 8))
    assert use_vmap("auto", torch.zeros(2, 3, 1))
    assert use_vmap(True, torch.zeros(2, 3, 1, 8, 8)) and not use_vmap(False, torch.zeros(2, 3, 1))


@pytest.mark.parametrize("vectorize", [True, False])
def test_checkpointed_inner_loop_matches_the_reference(vectorize, batch):
    learner = make("maml", vectorize, checkpoint_inner=True)
    meta = {k: v.detach() for k, v in learner.graph.named_parameters()}
    ref = reference_meta_grads(meta, batch, first_order=False, adapt_keys=learner.adapt_keys)
    got = learner_meta_grads(learner, batch)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-10, atol=1e-10, msg=k)


def test_evaluation_curve_of_the_loop_equals_the_vmapped_one(batch):
    curves = [make("maml", v).evaluate(batch, steps=3) for v in (True, False)]
    torch.testing.assert_close(curves[0], curves[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("algorithm", ["maml", "metasgd"])
def test_guarded_evaluation_of_the_loop_equals_the_vmapped_one(algorithm, batch):
    """Meta-SGD evaluates through the guarded loop (``torch.func.grad`` per task), where batch
    norm runs torch's kernel instead of its custom autograd functions."""
    curves = [make(algorithm, v, eval_guard=True).evaluate(batch, steps=3) for v in (True, False)]
    torch.testing.assert_close(curves[0], curves[1], rtol=1e-12, atol=1e-12)


def step_size_values(learner):
    return {k.replace("__", "."): p.detach() for k, p in learner.step_sizes.items()}


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "anil"])
@pytest.mark.parametrize("vectorize", [True, False])
def test_per_step_learning_rates_match_the_reference(algorithm, vectorize, batch):
    learner = make(algorithm, vectorize, per_step_lr=True)
    assert len(learner.step_sizes) == STEPS * len(learner.adapt_keys)
    meta = {k: v.detach() for k, v in learner.graph.named_parameters()}
    ref = reference_meta_grads(
        meta,
        batch,
        first_order=learner.first_order,
        adapt_keys=learner.adapt_keys,
        lrs=step_size_values(learner),
    )
    got = learner_meta_grads(learner, batch)
    assert set(ref) == set(got)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-10, atol=1e-10, msg=k)


def test_per_step_learning_rates_past_training_steps_reuse_the_last(batch):
    learner = make("maml", False, per_step_lr=True, eval_guard=False)  # unguarded: plain SGD
    lrs = step_size_values(learner)
    curve = learner.evaluate(batch, steps=STEPS + 2)
    # Per task, by hand: step sizes l0, l1, l1, l1.
    for t in range(T):
        p = {k: v.detach() for k, v in learner.graph.named_parameters()}
        for s in range(STEPS + 2):
            leaves = {k: v.clone().requires_grad_(True) for k, v in p.items()}
            loss = F.cross_entropy(net(leaves, batch.support_x[t]), batch.support_y[t])
            grads = torch.autograd.grad(loss, list(leaves.values()))
            lr = {k: lrs[f"{k}.step{min(s, STEPS - 1)}"] for k in p}
            p = {k: v - lr[k] * g for (k, v), g in zip(p.items(), grads)}
        with torch.no_grad():
            acc = (net(p, batch.query_x[t]).argmax(-1) == batch.query_y[t]).double().mean()
        torch.testing.assert_close(curve[-1, t], acc)


def test_per_step_learning_rates_are_refused_for_metasgd():
    with pytest.raises(ValueError, match="per_step_lr"):
        make("metasgd", True, per_step_lr=True)


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
@pytest.mark.parametrize("vectorize", [True, False])
def test_nchw_layout_matches_the_reference(algorithm, vectorize, batch, monkeypatch):
    """On CPU every batch runs channels-last; run them NCHW too (the layout everywhere else)."""
    from metacompose.modules import conv

    monkeypatch.setattr(conv, "CHANNELS_LAST_MIN_BATCH", 10**9)
    test_every_path_matches_the_hand_unrolled_reference(algorithm, vectorize, batch)
