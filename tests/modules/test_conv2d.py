"""conv2d's double backward against independent references: torch's own convolution autograd
(``F.conv2d``, its generic double backward) and finite differences (``gradcheck``/
``gradgradcheck``), in float64."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from metacompose.modules.conv2d import conv2d

GEOMETRIES = [
    # (in channels, out channels, kernel, stride, padding, dilation, groups, bias)
    (3, 4, 3, (1, 1), (1, 1), (1, 1), 1, True),
    (1, 5, 3, (1, 1), (1, 1), (1, 1), 1, True),
    (4, 6, (3, 2), (2, 1), (0, 1), (1, 2), 2, False),
    (1, 3, (3, 2), (2, 1), (1, 0), (1, 2), 1, True),  # one channel, strided, dilated
]


def case(geometry, *, seed, channels_last=False, batch=2, size=7):
    cin, cout, k, stride, padding, dilation, groups, bias = geometry
    k = (k, k) if isinstance(k, int) else k
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cin, size, size, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(cout, cin // groups, *k, generator=g, dtype=torch.float64)
    b = torch.randn(cout, generator=g, dtype=torch.float64) if bias else None
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return x, w, b, kw


def ours(x, w, b, kw):
    return conv2d(x, w, b, **kw)


def torchs(x, w, b, kw):
    return F.conv2d(x, w, b, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_values_gradients_and_second_derivatives_match_finite_differences(geometry):
    x, w, b, kw = case(geometry, seed=0, batch=2, size=5)
    inputs = [t.requires_grad_() for t in (x, w, b) if t is not None]

    def fn(*args):
        return ours(args[0], args[1], args[2] if b is not None else None, kw)

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("needs_x", [False, True])
def test_second_order_maml_quantities_equal_torchs_own_double_backward(
    geometry, channels_last, needs_x
):
    """A MAML-like objective: an inner gradient with create_graph, a loss of the gradients and of
    the output, then the outer gradient; both ways, to 1e-10. With ``needs_x`` False the input is
    data (no gradient), as the images are at the first layer."""
    results = []
    for fn in (ours, torchs):
        x, w, b, kw = case(geometry, seed=1, channels_last=channels_last)
        x.requires_grad_(needs_x)
        w.requires_grad_()
        if b is not None:
            b.requires_grad_()
        params = [t for t in (x, w, b) if t is not None and t.requires_grad]
        y = fn(x, w, b, kw)
        inner = torch.autograd.grad((y.sin() * y).sum(), params, create_graph=True)
        fast = [p - 0.1 * g for p, g in zip(params, inner)]
        args = dict(
            zip([n for n, t in zip("xwb", (x, w, b)) if t is not None and t.requires_grad], fast)
        )
        y2 = fn(args.get("x", x), args["w"], args.get("b", b), kw)
        outer = (y2**2).mean() + sum((g**3).sum() for g in inner)
        results.append(torch.autograd.grad(outer, params))
    for got, ref in zip(*results):
        assert torch.allclose(got, ref, atol=1e-10, rtol=1e-10)


def test_double_backward_with_only_some_cotangents():
    """Only dw's cotangent (then only dx's) reaches the double backward."""
    x, w, b, kw = case(GEOMETRIES[0], seed=2)
    for pick in (1, 0):
        results = []
        for fn in (ours, torchs):
            xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
            y = fn(xs, ws, bs, kw)
            first = torch.autograd.grad((y**2).sum(), (xs, ws), create_graph=True)
            results.append(torch.autograd.grad((first[pick] ** 2).sum(), (xs, ws, bs)))
        for got, ref in zip(*results):
            assert torch.allclose(got, ref, atol=1e-10, rtol=1e-10)


def test_torch_func_transforms_take_torchs_kernel():
    x, w, b, kw = case(GEOMETRIES[0], seed=3)
    g_ours = grad(lambda w_: ours(x, w_, b, kw).pow(2).sum())(w)
    g_ref = grad(lambda w_: torchs(x, w_, b, kw).pow(2).sum())(w)
    assert torch.allclose(g_ours, g_ref, atol=1e-12)
    batched = vmap(lambda w_: ours(x, w_, b, kw))(torch.stack([w, 2 * w]))
    assert torch.allclose(batched[1], torchs(x, 2 * w, b, kw), atol=1e-12)


def test_third_order_derivatives_fail_loudly():
    x, w, b, kw = case(GEOMETRIES[0], seed=4)
    x.requires_grad_()
    w.requires_grad_()
    y = ours(x, w, b, kw)
    first = torch.autograd.grad((y**3).sum(), (x, w), create_graph=True)
    second = sum((g**2).sum() for g in first)
    torch.autograd.grad(second, (x, w), retain_graph=True)  # second order: fine
    with pytest.raises(RuntimeError, match="third-order"):
        torch.autograd.grad(second, (x, w), create_graph=True)


def test_autocast_takes_torchs_kernel():
    x, w, b, kw = (
        t.float() if isinstance(t, torch.Tensor) else t for t in case(GEOMETRIES[0], seed=5)
    )
    w.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ours(x, w, b, kw)
        (g,) = torch.autograd.grad(y.float().pow(2).sum(), w, create_graph=True)
    assert y.dtype == torch.bfloat16
    assert g.grad_fn is not None and torch.isfinite(g).all()


def test_a_transform_over_other_values_takes_torchs_kernel():
    """``torch.func.grad`` of a head on top of a conv whose inputs it does not wrap."""
    x, w, b, kw = case(GEOMETRIES[0], seed=6)
    head = torch.randn(w.shape[0], dtype=torch.float64)

    def loss(fn):
        return lambda h: (fn(x, w, b, kw).sum(dim=(0, 2, 3)) * h).sum()

    assert torch.allclose(grad(loss(ours))(head), grad(loss(torchs))(head), atol=1e-12)
