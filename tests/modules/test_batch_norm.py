"""TaskBatchNorm2d's fused path and its closed-form double backward against independent references:
torch's own ``nn.BatchNorm2d`` (values), finite differences (``gradcheck``/``gradgradcheck``) and
autograd through the textbook formula in float64 (second-order MAML quantities)."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

from metacompose.modules.batch_norm import (
    TaskBatchNorm2d,
    batch_norm,
    batch_norm_max_pool,
    inside_vmap,
)

EPS = 1e-5


def textbook(x, w, b):
    """Batch norm written out: per-channel mean and biased variance over (B, H, W)."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    return (x - mean) / torch.sqrt(var + EPS) * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)


def inputs(shape, *, seed, channels_last=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * 2 + 0.5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    c = shape[1]
    w = torch.randn(c, generator=g, dtype=torch.float64)  # some scales negative
    b = torch.randn(c, generator=g, dtype=torch.float64)
    return x.requires_grad_(), w.requires_grad_(), b.requires_grad_()


def test_task_batch_norm_equals_torch_batch_norm_without_running_stats():
    ours = TaskBatchNorm2d(3).double()
    ref = torch.nn.BatchNorm2d(3, track_running_stats=False).double()
    with torch.no_grad():
        ours.weight.copy_(torch.randn(3))
        ours.bias.copy_(torch.randn(3))
        ref.weight.copy_(ours.weight)
        ref.bias.copy_(ours.bias)
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64) * 3 + 1
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("channels_last", [False, True])
def test_gradients_and_second_derivatives_match_finite_differences(channels_last):
    x, w, b = inputs((3, 2, 3, 4), seed=0, channels_last=channels_last)

    def f(x, w, b):
        return batch_norm(x, w, b, eps=EPS)

    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


@pytest.mark.parametrize("shape,channels_last", [((5, 4, 6, 6), False), ((7, 3, 4, 4), True)])
def test_second_order_quantities_match_the_textbook_formula(shape, channels_last):
    """An inner gradient (create_graph) differentiated again, as second-order MAML does, with
    cotangents on every output (dx, dw and db all feed the outer loss)."""
    x, w, b = inputs(shape, seed=1, channels_last=channels_last)
    t = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def outer_grads(fn):
        y = fn(x, w, b)
        inner = (y * t).sum() + 0.1 * (y**3).sum()
        gx, gw, gb = torch.autograd.grad(inner, (x, w, b), create_graph=True)
        outer = (gx * gx.detach().sin()).sum() + (gw**2).sum() * 0.7 + (gb * gw).sum()
        return torch.autograd.grad(outer, (x, w, b))

    ours = outer_grads(lambda x, w, b: batch_norm(x, w, b, eps=EPS))
    ref = outer_grads(textbook)
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10 * r.abs().max().item())


def test_double_backward_with_only_some_cotangents():
    """The outer loss may use only the input gradient (the conv below needs it, the batch-norm
    parameters may not be adapted): the missing cotangents count as zeros."""
    x, w, b = inputs((4, 3, 3, 3), seed=3)
    results = []
    for fn in (lambda x, w, b: batch_norm(x, w, b, eps=EPS), textbook):
        y = fn(x, w, b)
        (gx,) = torch.autograd.grad((y.tanh()).sum(), (x,), create_graph=True)
        results.append(torch.autograd.grad((gx**2).sum(), (x, w, b)))
    for a, r in zip(*results):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


def test_vmap_takes_the_plain_path_with_the_same_values():
    layer = TaskBatchNorm2d(3).double()
    x = torch.randn(2, 4, 3, 5, 5, dtype=torch.float64)
    assert not inside_vmap(x)
    assert vmap(lambda xt: torch.tensor(inside_vmap(xt)))(x).all()
    torch.testing.assert_close(vmap(layer)(x), torch.stack([layer(xt) for xt in x]))


def pooled_textbook(x, w, b):
    return torch.nn.functional.max_pool2d(textbook(x, w, b), 2)


@pytest.mark.parametrize(
    "shape,channels_last",
    [((5, 4, 6, 6), False), ((7, 3, 4, 4), True), ((3, 2, 7, 7), False), ((4, 3, 5, 5), True)],
)
def test_fused_batch_norm_max_pool_matches_pooling_the_textbook_formula(shape, channels_last):
    """Values, gradients (the closed-form backward) and second-order quantities (the
    create_graph composition), odd sizes included (the last row and column fall outside every
    window)."""
    x, _, b = inputs(shape, seed=4, channels_last=channels_last)
    w = torch.rand(shape[1], generator=torch.Generator().manual_seed(5), dtype=torch.float64) + 0.2
    w.requires_grad_()
    fused = lambda x, w, b: batch_norm_max_pool(x, w, b, eps=EPS)  # noqa: E731
    torch.testing.assert_close(fused(x, w, b), pooled_textbook(x, w, b), rtol=1e-12, atol=1e-12)
    t = torch.randn(fused(x, w, b).shape, generator=torch.Generator().manual_seed(6), dtype=w.dtype)
    first = [
        torch.autograd.grad((fn(x, w, b) * t).sum(), (x, w, b)) for fn in (fused, pooled_textbook)
    ]
    for a, r in zip(*first):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)

    def outer_grads(fn):
        y = fn(x, w, b)
        gx, gw, gb = torch.autograd.grad(
            (y * t).sum() + 0.1 * (y**3).sum(), (x, w, b), create_graph=True
        )
        outer = (gx * gx.detach().sin()).sum() + (gw**2).sum() + (gb * gw).sum()
        return torch.autograd.grad(outer, (x, w, b))

    for a, r in zip(outer_grads(fused), outer_grads(pooled_textbook)):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10 * r.abs().max().item())
    assert torch.autograd.gradcheck(fused, (x, w, b))


def test_pooled_falls_back_when_a_scale_is_not_positive():
    """With w <= 0 batch norm is not increasing in that channel, so pooling first would be wrong:
    ``pooled`` then normalises and pools in that order."""
    layer = TaskBatchNorm2d(3).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.5, -0.7, 0.0]))
        layer.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    ref = pooled_textbook(x, layer.weight, layer.bias)
    torch.testing.assert_close(layer.pooled(x), ref, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        layer.weight.abs_().add_(0.1)
    torch.testing.assert_close(
        layer.pooled(x), pooled_textbook(x, layer.weight, layer.bias), rtol=1e-12, atol=1e-12
    )


def test_pooled_runs_forward_hooks():
    """A hook on the module sees (and may replace) the normalised activation, as without fusion."""
    layer = TaskBatchNorm2d(2).double()
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    seen = []
    handle = layer.register_forward_hook(lambda m, inp, out: seen.append(out.shape) or out * 0)
    try:
        out = layer.pooled(x)
    finally:
        handle.remove()
    assert seen == [(3, 2, 4, 4)]
    assert torch.equal(out, torch.zeros(3, 2, 2, 2, dtype=torch.float64))


@pytest.mark.parametrize("method", ["forward", "pooled"])
def test_torch_func_grad_runs_torch_kernel_with_the_same_gradients(method):
    """Under ``torch.func`` transforms the custom autograd functions are not used (they would need
    functorch rules); gradients equal plain autograd."""
    layer = TaskBatchNorm2d(3).double()
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    params = dict(layer.named_parameters())

    def loss(p, x):
        out = (
            torch.func.functional_call(layer, p, (x,), strict=True) if method == "forward" else None
        )
        if method == "pooled":
            with torch.nn.utils.stateless._reparametrize_module(layer, p):
                out = layer.pooled(x)
        return (out**2).sum()

    ours = torch.func.grad(loss, argnums=(0, 1))(params, x)
    ref = torch.autograd.grad(loss(params, x.requires_grad_()), [*params.values(), x])
    for a, r in zip([*ours[0].values(), ours[1]], ref):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)


def test_third_order_derivatives_fail_loudly():
    """The double backward is closed-form: asking for it with ``create_graph`` (a third
    derivative to come) raises instead of silently dropping terms."""
    x, w, b = inputs((4, 2, 4, 4), seed=7)
    w = w.detach().abs().add(0.1).requires_grad_()
    for fn in (batch_norm, batch_norm_max_pool):
        y = fn(x, w, b, eps=EPS)
        g1 = torch.autograd.grad((y**3).sum(), (x, w), create_graph=True)
        outer = sum((g**2).sum() for g in g1)
        torch.autograd.grad(outer, (x, w), retain_graph=True)  # second order: fine
        with pytest.raises(RuntimeError, match="third-order"):
            torch.autograd.grad(outer, (x, w), create_graph=True)


@pytest.mark.parametrize("offset", [0.0, 30.0, 300.0, 3000.0])
def test_fused_statistics_are_as_accurate_as_torchs_batch_norm(offset):
    """float32 channels-last, conv4's query size, far from the origin too: the fused path uses the
    statistics of torch's own kernel (two-pass variance: no ``sum x^2 - n mean^2`` cancellation),
    so it is as accurate as ``max_pool2d(F.batch_norm(x))`` against float64 (within 10%: its affine
    map rounds differently), and tight near 0."""
    g = torch.Generator().manual_seed(8)
    x = (torch.randn(75, 8, 28, 28, generator=g) + offset).contiguous(
        memory_format=torch.channels_last
    )
    w, b = torch.rand(8, generator=g) + 0.5, torch.randn(8, generator=g)
    ref = pooled_textbook(x.double(), w.double(), b.double())
    got = batch_norm_max_pool(x, w, b, eps=EPS)
    native = F.max_pool2d(F.batch_norm(x, None, None, w, b, training=True, eps=EPS), 2)
    err, native_err = ((t.double() - ref).abs().max().item() for t in (got, native))
    assert err <= 1.1 * native_err + 1e-6
    assert offset > 0 or err < 1e-4


def test_conv_block_runs_hooks_on_its_pool_and_norm():
    from metacompose.modules.conv import ConvBlock

    block = ConvBlock(image_size=8, filters=4, depth=1).double()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    fired = []
    pool, norm = block.layers[3], block.layers[1]
    handles = [
        pool.register_forward_hook(lambda *a: fired.append("pool")),
        norm.register_full_backward_hook(lambda *a: fired.append("norm-backward")),
    ]
    try:
        block(x.requires_grad_()).sum().backward()
    finally:
        for h in handles:
            h.remove()
    assert sorted(fired) == ["norm-backward", "pool"]
