"""Vectorised fine-tuning against torch.optim on a per-task copy of the model."""

import copy

import torch

from metacompose.algorithms.losses import task_loss
from metacompose.baselines.finetune import FineTuneLearner, adam_update
from metacompose.models import mlp_graph
from metacompose.tasks import SinusoidFamily


def test_adam_update_matches_torch_adam():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64)
    ref = w.clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=0.05)
    params, state = (
        {"w": w.clone()},
        {"m": {"w": torch.zeros_like(w)}, "v": {"w": torch.zeros_like(w)}},
    )
    for s in range(1, 6):
        grad = torch.randn(3, 4, generator=g, dtype=torch.float64)
        ref.grad = grad.clone()
        opt.step()
        params, state = adam_update(params, {"w": grad}, state, s, lr=0.05)
    torch.testing.assert_close(params["w"], ref.detach(), atol=1e-12, rtol=1e-10)


def batch(n=3, shots=5):
    return SinusoidFamily().sample(
        n, shots=shots, query=7, generator=torch.Generator().manual_seed(3)
    )


def test_vectorised_finetuning_equals_per_task_torch_adam():
    graph = mlp_graph(hidden=[8, 8])
    b = batch()
    ft = FineTuneLearner(graph=graph, loss="mse", lr=0.01, steps=4)
    fast, _ = ft.adapt(b.support_x, b.support_y)
    for t in range(b.num_tasks):
        model = copy.deepcopy(graph)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(4):
            opt.zero_grad()
            task_loss(model(b.support_x[t]), b.support_y[t], "mse").backward()
            opt.step()
        for k, p in model.named_parameters():
            torch.testing.assert_close(fast[k][t], p.detach(), atol=1e-5, rtol=1e-4)


def test_scratch_training_reduces_support_loss_and_head_scope_freezes_body():
    graph = mlp_graph(hidden=[16, 16])
    b = batch(4, shots=10)
    ft = FineTuneLearner(graph=graph, loss="mse", lr=0.01, steps=50)
    before = torch.stack(
        [task_loss(graph(b.support_x[t]), b.support_y[t], "mse") for t in range(4)]
    )
    fast, frozen = ft.adapt(b.support_x, b.support_y)
    after = torch.stack([
        task_loss(graph.apply_params({**frozen, **{k: v[t] for k, v in fast.items()}}, b.support_x[t]),
                  b.support_y[t], "mse")
        for t in range(4)
    ])  # fmt: skip
    assert (after < 0.7 * before).all()
    head = FineTuneLearner(graph=graph, loss="mse", lr=0.01, steps=3, adapt=["head"])
    fast, frozen = head.adapt(b.support_x, b.support_y)
    assert set(fast) == {"head.linear.weight", "head.linear.bias"}
    curve = ft.evaluate(b, steps=5)
    assert curve.shape == (6, 4) and curve.isfinite().all()
    # The model itself is never modified by fine-tuning.
    torch.testing.assert_close(graph(b.support_x[0]), mlp_graph(hidden=[16, 16]).apply_params(
        dict(graph.named_parameters()), b.support_x[0]))  # fmt: skip
