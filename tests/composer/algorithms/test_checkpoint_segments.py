"""Segmented checkpointing of the inner loop (``checkpoint_steps``): the meta-gradient of every
segmentation equals a hand-unrolled float64 loop; the segments cover the steps in ~sqrt pieces."""

import math

import pytest
import torch

from metacompose.algorithms.inner_loop import adapt, broadcast_tasks, segments

T, K, H, LR = 3, 5, 6, 0.05


class TinyNet:
    """``tanh(x W1^T + b1) W2^T + b2`` with explicit parameters (a ``FunctionalModel``)."""

    def apply_params(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ p["w1"].T + p["b1"]) @ p["w2"].T + p["b2"]


def task_data():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(T, 2 * K, 2, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(-1, keepdim=True) * 1.7)
    return x[:, :K], y[:, :K], x[:, K:], y[:, K:]


def meta_params():
    g = torch.Generator().manual_seed(4)
    shapes = {"w1": (H, 2), "b1": (H,), "w2": (1, H), "b2": (1,)}
    return {k: torch.randn(*s, generator=g, dtype=torch.float64) for k, s in shapes.items()}


def step_sizes(steps: int) -> list[dict[str, torch.Tensor]]:
    """Learned per-step, per-parameter step sizes (MAML++ and Meta-SGD at once)."""
    g = torch.Generator().manual_seed(5)
    shapes = {k: v.shape for k, v in meta_params().items()}
    return [
        {k: LR * (1 + torch.rand(*s, generator=g, dtype=torch.float64)) for k, s in shapes.items()}
        for _ in range(steps)
    ]


def reference(steps: int):
    """Every task unrolled with autograd.grad(create_graph=True); gradients of the summed query
    losses w.r.t. the meta-parameters and every step size."""
    sx, sy, qx, qy = task_data()
    meta = {k: v.requires_grad_() for k, v in meta_params().items()}
    lrs = [{k: v.requires_grad_() for k, v in d.items()} for d in step_sizes(steps)]
    net, total = TinyNet(), 0.0
    for t in range(T):
        fast = dict(meta)
        for s in range(steps):
            loss = ((net.apply_params(fast, sx[t]) - sy[t]) ** 2).mean()
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
            fast = {k: fast[k] - lrs[s][k] * g for k, g in zip(fast, grads)}
        total = total + ((net.apply_params(fast, qx[t]) - qy[t]) ** 2).mean()
    wrt = [*meta.values(), *(v for d in lrs for v in d.values())]
    return torch.autograd.grad(total, wrt)


def checkpointed(steps: int, vectorize: bool):
    sx, sy, qx, qy = task_data()
    meta = {k: v.requires_grad_() for k, v in meta_params().items()}
    lrs = [{k: v.requires_grad_() for k, v in d.items()} for d in step_sizes(steps)]
    net = TinyNet()
    fast = adapt(
        net,
        broadcast_tasks(meta, T),
        {},
        lrs,
        sx,
        sy,
        steps=steps,
        loss="mse",
        first_order=False,
        vectorize=vectorize,
        checkpoint_steps=True,
    )
    total = sum(
        ((net.apply_params({k: v[t] for k, v in fast.items()}, qx[t]) - qy[t]) ** 2).mean()
        for t in range(T)
    )
    total.backward()  # reentrant checkpointing supports .backward(), not autograd.grad
    return [v.grad for v in (*meta.values(), *(v for d in lrs for v in d.values()))]


@pytest.mark.parametrize("steps", [1, 2, 5, 10])
@pytest.mark.parametrize("vectorize", [True, False], ids=["vmap", "loop"])
def test_segmented_checkpointing_gives_the_reference_meta_gradient(steps, vectorize):
    want = reference(steps)
    got = checkpointed(steps, vectorize)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)
    assert max(w.abs().max() for w in want) > 1e-3, "degenerate test: all gradients ~zero"


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 9, 10, 20, 50, 51, 100])
def test_segments_cover_the_steps_in_about_sqrt_pieces(steps):
    parts = segments(steps)
    size = math.ceil(math.sqrt(steps))
    assert sum(parts) == steps and all(0 < p <= size for p in parts)
    assert parts[:-1] == [size] * (len(parts) - 1)
    assert len(parts) + size <= 2 * math.sqrt(steps) + 2  # fast-weight copies alive at once


def test_segments_of_known_lengths():
    assert segments(1) == [1]
    assert segments(10) == [4, 4, 2]
    assert segments(50) == [8] * 6 + [2]
    assert segments(0) == []
