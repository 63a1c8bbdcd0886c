"""Meta-gradients of every algorithm against an independent, hand-unrolled float64 reference.

The reference writes the 1-H-H-1 network out by hand (no functional_call, no vmap, no torch.func)
and unrolls the inner loop per task with ``torch.autograd.grad(create_graph=...)``.
"""

import pytest
import torch

from metacompose.algorithms import InnerLoop, MetaLearner
from metacompose.models import mlp_graph
from metacompose.tasks import SinusoidFamily

T, K, H, STEPS, LR = 4, 5, 8, 3, 0.05
KEYS = [
    "body.layers.0.weight",
    "body.layers.0.bias",
    "body.layers.2.weight",
    "body.layers.2.bias",
    "head.linear.weight",
    "head.linear.bias",
]


def net(p, x):
    h = torch.relu(x @ p[KEYS[0]].T + p[KEYS[1]])
    h = torch.relu(h @ p[KEYS[2]].T + p[KEYS[3]])
    return h @ p[KEYS[4]].T + p[KEYS[5]]


def reference_meta_grads(meta, batch, *, algorithm, lrs=None, adapt_keys=KEYS):
    """Per-task unrolled loop; returns d(meta-objective)/d(meta params [, step sizes])."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in meta.items()}
    lr_leaves = (
        {k: v.detach().clone().requires_grad_(True) for k, v in lrs.items()} if lrs else None
    )
    first_order = algorithm in ("fomaml", "reptile")
    total = 0.0
    adapted_all = []
    for t in range(batch.num_tasks):
        sx, sy = batch.support_x[t], batch.support_y[t]
        if algorithm == "reptile":
            sx = torch.cat([sx, batch.query_x[t]])
            sy = torch.cat([sy, batch.query_y[t]])
        fast = dict(leaves)
        for _ in range(STEPS):
            loss = ((net(fast, sx) - sy) ** 2).mean()
            grads = torch.autograd.grad(
                loss, [fast[k] for k in adapt_keys], create_graph=not first_order
            )
            for k, g in zip(adapt_keys, grads):
                step = lr_leaves[k] if lr_leaves else LR
                fast[k] = fast[k] - step * (g.detach() if first_order else g)
        if algorithm == "reptile":
            adapted_all.append({k: fast[k].detach() for k in adapt_keys})
            continue
        total = total + ((net(fast, batch.query_x[t]) - batch.query_y[t]) ** 2).mean()
    if algorithm == "reptile":
        return {
            k: leaves[k].detach() - torch.stack([a[k] for a in adapted_all]).mean(0)
            for k in adapt_keys
        }
    objective = total / batch.num_tasks
    wrt = [leaves[k] for k in KEYS] + ([lr_leaves[k] for k in adapt_keys] if lr_leaves else [])
    grads = torch.autograd.grad(objective, wrt, allow_unused=True)
    out = {k: g if g is not None else torch.zeros_like(leaves[k]) for k, g in zip(KEYS, grads)}
    if lr_leaves:
        out.update({f"lr:{k}": g for k, g in zip(adapt_keys, grads[len(KEYS) :])})
    return out


def learner_meta_grads(learner, batch):
    learner.zero_grad()
    learner.meta_step(batch).objective.backward()
    out = {
        k: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
        for k, p in learner.graph.named_parameters()
    }
    for k in learner.adapt_keys:
        if learner.algorithm == "metasgd":
            out[f"lr:{k}"] = learner.step_sizes[k.replace(".", "__")].grad.clone()
    return out


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(123)
    return SinusoidFamily().sample(T, shots=K, query=K, generator=g).to("cpu", torch.float64)


def make(algorithm, vectorize, *, chunk_size=None, **kw):
    torch.manual_seed(7)
    graph = mlp_graph(in_features=1, hidden=[H, H], out_features=1).double()
    inner = InnerLoop(lr=LR, steps=STEPS, vectorize=vectorize, chunk_size=chunk_size)
    return MetaLearner(graph=graph, algorithm=algorithm, inner=inner, **kw).double()


@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "metasgd", "anil", "reptile"])
def test_vmapped_loop_and_reference_agree(algorithm, batch):
    fast_path = make(algorithm, True)
    loop_path = make(algorithm, False)
    meta = {k: v.detach() for k, v in fast_path.graph.named_parameters()}
    lrs = None
    if algorithm == "metasgd":
        # Distinct learned step sizes per element, so their gradients are non-trivial.
        with torch.no_grad():
            for learner in (fast_path, loop_path):
                for i, p in enumerate(learner.step_sizes.values()):
                    p.copy_(
                        LR * (1 + 0.1 * i)
                        + 0.01
                        * torch.rand(
                            p.shape, generator=torch.Generator().manual_seed(i), dtype=p.dtype
                        )
                    )
        lrs = {k: fast_path.step_sizes[k.replace(".", "__")].detach() for k in fast_path.adapt_keys}
    adapt_keys = fast_path.adapt_keys
    ref = reference_meta_grads(meta, batch, algorithm=algorithm, lrs=lrs, adapt_keys=adapt_keys)
    got_vmap = learner_meta_grads(fast_path, batch)
    got_loop = learner_meta_grads(loop_path, batch)
    assert set(ref) <= set(got_vmap)
    for k in ref:
        torch.testing.assert_close(got_vmap[k], ref[k], rtol=1e-8, atol=1e-8, msg=f"vmap {k}")
        torch.testing.assert_close(got_loop[k], ref[k], rtol=1e-8, atol=1e-8, msg=f"loop {k}")
        torch.testing.assert_close(got_vmap[k], got_loop[k], rtol=1e-8, atol=1e-8)
    assert any(ref[k].abs().max() > 1e-6 for k in ref), "degenerate test: all gradients zero"


def test_second_order_differs_from_first_order(batch):
    """Guards against the second-order term silently vanishing (e.g. a stray detach)."""
    so = learner_meta_grads(make("maml", True), batch)
    fo = learner_meta_grads(make("fomaml", True), batch)
    diff = max((so[k] - fo[k]).abs().max().item() for k in KEYS)
    assert diff > 1e-4


def test_metasgd_step_sizes_receive_gradients(batch):
    learner = make("metasgd", True)
    learner.meta_step(batch).objective.backward()
    for name, p in learner.step_sizes.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert set(learner.step_sizes) == {k.replace(".", "__") for k in KEYS}


def test_anil_leaves_non_adapted_modules_untouched(batch):
    learner = make("anil", True)
    assert learner.adapt_keys == ["head.linear.weight", "head.linear.bias"]
    meta = dict(learner.graph.named_parameters())
    fast, frozen = learner.adapt(batch.support_x, batch.support_y)
    assert set(fast) == {"head.linear.weight", "head.linear.bias"}
    for k, v in frozen.items():
        assert v is meta[k]  # the very same tensor: the inner loop never rewrote the body
    moved = (fast["head.linear.weight"] - meta["head.linear.weight"]).abs().max()
    assert moved > 0


@pytest.mark.parametrize("algorithm", ["maml", "metasgd"])
def test_inner_loop_checkpointing_gives_the_same_meta_gradient(algorithm, batch):
    plain = learner_meta_grads(make(algorithm, True), batch)
    ckpt = learner_meta_grads(make(algorithm, True, checkpoint_inner=True), batch)
    for k in plain:
        torch.testing.assert_close(ckpt[k], plain[k], rtol=1e-10, atol=1e-10)


def test_chunked_vmap_gives_the_same_meta_gradient(batch):
    plain = learner_meta_grads(make("maml", True), batch)
    chunked = learner_meta_grads(make("maml", True, chunk_size=3), batch)
    for k in plain:
        torch.testing.assert_close(chunked[k], plain[k], rtol=1e-10, atol=1e-10)


def test_eval_steps_can_differ_from_training_steps(batch):
    learner = make("maml", True)
    curve = learner.evaluate(batch, steps=7)
    assert curve.shape == (8, T)
    with torch.no_grad():
        step0 = torch.stack(
            [((learner.graph(batch.query_x[t]) - batch.query_y[t]) ** 2).mean() for t in range(T)]
        )
    torch.testing.assert_close(curve[0], step0, rtol=1e-12, atol=1e-12)
    for steps in (1, 7):  # each point of the curve is the query MSE after that many steps
        fast, frozen = learner.adapt(batch.support_x, batch.support_y, steps=steps)
        after = learner.query_loss(fast, frozen, batch.query_x, batch.query_y)
        torch.testing.assert_close(curve[steps], after.detach(), rtol=1e-10, atol=1e-10)
